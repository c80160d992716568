"""The jail's command line (runner/sandbox/jail.py), checked without running it: what it shows,
read-only or writable, and which GPU device nodes a grading gets."""

from pathlib import Path

from runner.sandbox import jail


def fake_dev(tmp_path: Path, gpus: int) -> Path:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"] + [f"nvidia{k}" for k in range(gpus)]:
        (dev / name).touch()
    return dev


def test_a_grading_sees_only_its_own_gpus_nodes(tmp_path):
    dev = fake_dev(tmp_path, 4)
    nodes = [Path(n).name for n in jail.gpu_nodes(2, dev)]
    assert "nvidia2" in nodes and "nvidiactl" in nodes and "nvidia-uvm" in nodes
    assert not {"nvidia0", "nvidia1", "nvidia3"} & set(nodes)


def test_the_gpu_minor_comes_from_the_drivers_pci_table(tmp_path):
    gpus = tmp_path / "gpus"
    for minor, bus in ((0, "0000:18:00.0"), (1, "0000:3b:00.0")):
        (gpus / bus).mkdir(parents=True)
        (gpus / bus / "information").write_text(f"Model: H200\nDevice Minor: {minor}\n")
    assert jail.gpu_minor_of("0000:3b:00.0", gpus, fake_dev(tmp_path, 2)) == 1
    assert jail.gpu_minor_of("0000:18:00.0", gpus, tmp_path / "dev") == 0


def test_the_view_is_minimal_and_nothing_of_the_host_is_writable(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text("{}")
    solution_dir, challenge_dir = tmp_path / "solution", tmp_path / "medium" / "96_x"
    solution_dir.mkdir()
    challenge_dir.mkdir(parents=True)
    args = jail.command(jail.JailSpec(job_dir=job, mapped={solution_dir: "/submission",
                                                           challenge_dir: "/challenge/medium/96_x"},
                                      disk_bytes=123 << 20), ["python"], {"PATH": "/usr/bin"})
    pairs = [(args[k], args[k + 1]) for k in range(len(args) - 1)]
    assert not [b for a, b in pairs if a == "--bind"], "a host folder is writable in the jail"
    # the one writable place is a tmpfs of the disk limit's size, made by the kernel
    tmpfs = args.index(jail.JAIL_SCRATCH, args.index("--perms"))
    assert args[tmpfs - 1] == "--tmpfs" and args[tmpfs - 5:tmpfs - 3] == ["--size", str(123 << 20)]
    assert ("--ro-bind", str(solution_dir)) in pairs and ("--ro-bind", str(challenge_dir)) in pairs
    assert args[args.index(str(solution_dir)) + 1] == "/submission"
    assert args[args.index(str(job / "job.json")) + 1] == jail.JAIL_JOB_FILE
    shown = [b for a, b in pairs if a in ("--ro-bind", "--bind")]
    assert not any(p in ("/", "/home", "/root", "/etc", "/var", "/sys", "/sys/fs") for p in shown)
    assert not any(p.startswith("/sys/fs") or p.startswith("/sys/class/net") for p in shown)
    assert str(jail.RUNNER_ROOT) not in shown              # only its runner/ package
    assert str(job) not in shown                           # only its job.json, read-only
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                 "--die-with-parent", "--new-session", "--disable-userns", "--clearenv"):
        assert flag in args
    assert args[args.index("--cap-drop") + 1] == "ALL"
    assert args[args.index("--uid") + 1] == str(jail.SANDBOX_UID)
