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


def test_the_view_is_minimal_and_read_only_but_for_the_job(tmp_path):
    job = tmp_path / "job"
    (job / "tmp").mkdir(parents=True)
    solution_dir = tmp_path / "solution"
    solution_dir.mkdir()
    args = jail.command(jail.JailSpec(job_dir=job, read_only=[solution_dir]), ["python"],
                        {"PATH": "/usr/bin"})
    pairs = [(args[k], args[k + 1]) for k in range(len(args) - 1)]
    writable = [b for a, b in pairs if a == "--bind"]
    assert sorted(writable) == sorted([str(job / "tmp"), str(job)])
    assert ("--ro-bind", str(solution_dir)) in pairs
    shown = [b for a, b in pairs if a in ("--ro-bind", "--bind")]
    assert not any(p in ("/", "/home", "/root", "/etc", "/var") for p in shown)
    assert str(jail.RUNNER_ROOT) not in shown              # only its runner/ package
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                 "--die-with-parent", "--new-session", "--disable-userns", "--clearenv"):
        assert flag in args
    assert args[args.index("--cap-drop") + 1] == "ALL"
    assert args[args.index("--uid") + 1] == str(jail.SANDBOX_UID)
