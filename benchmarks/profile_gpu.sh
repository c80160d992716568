#!/usr/bin/env bash
# Issue 29 on the GPU: `--action profile` of 96's CUDA and PyTorch references and of the three
# fixtures in benchmarks/profile/ (one block per head, 163 launches per call, a synchronize and
# a two-pass loop), in the jail, each with its wall time; then Nsight Compute in the jail even
# where the driver restricts counters (how it fails), without the jail (counters as this user),
# and straight on the profiled process (is ncu usable here at all); then tests/test_profile.py
# (its GPU tests included). Under 9 minutes on a fresh machine (later runs are skipped past
# 7 minutes, and say so in times.tsv).
#
#     bash benchmarks/profile_gpu.sh OUT        (or: bash benchmarks/device_verify.sh profile OUT)
#
# OUT gets env.txt (the GPU, the driver's RmProfilingAdminOnly, where ncu is), NAME.json (the
# result) and NAME.txt (the text report) per run, NAME.err (progress), times.tsv (seconds and
# exit code per run), ncu_direct.csv, tests.txt. What to look for, in each NAME.txt's "Profile"
# section: a timeline (kernels with grid, block, duration, share, gap), a "counters:" line
# (the figures, or why there are none), and the "diagnosis:" line, which should name:
#   cuda_ref            memory-bound at-floor or near it, 1 launch (maybe a host-time note)
#   one_block           memory-bound at a few % of the floor: too few bytes in flight, a grid of
#                       32 blocks on 132 SMs leaves 100 idle
#   many_launches       host-bound: 163 (or more) launches per call
#   sync_two_pass       host-bound, plus "waits for the GPU inside solve" and "copies to the host"
#   pytorch_ref         memory-bound far from the floor, with "N kernels share the GPU time"
#   cuda_ref_ncu_always the counters' reason (ERR_NVGPUCTRPERM) or, where the driver allows
#                       them, counters from inside the jail
#   one_block_no_sandbox counters (occupancy, its limiter, DRAM, stalls) where ncu exists
# and, in each JSON's profile, "timeline_seconds" + "ncu_seconds" under 30 s for the references.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?an output folder}
mkdir -p "$out"
py=${PYTHON:-python3}

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
    echo "--- profiling permission:"; grep -i profil /proc/driver/nvidia/params
    echo "--- ncu:"; command -v ncu; ls -d /usr/local/cuda*/bin/ncu /usr/local/cuda*/nsight-compute* \
        /opt/nvidia/nsight-compute/* 2>&1
    echo "--- id:"; id
    echo "--- bwrap:"; command -v bwrap; echo "GRADER_BWRAP=${GRADER_BWRAP:-}"
    $py -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
} > "$out/env.txt" 2>&1

printf 'run\tseconds\trc\n' > "$out/times.tsv"
profile() {   # NAME SOLUTION [extra args...]
    local name=$1 solution=$2; shift 2
    local start=$SECONDS
    if [ $SECONDS -gt 420 ]; then     # keep the whole script under 9 minutes
        printf '%s\tskipped\t-\n' "$name" >> "$out/times.tsv"; return
    fi
    timeout 120 $py run_challenge.py 96 --solution "$solution" --action profile --json "$@" \
        > "$out/$name.json" 2> "$out/$name.err"
    local rc=$?
    printf '%s\t%s\t%s\n' "$name" "$((SECONDS - start))" "$rc" >> "$out/times.tsv"
    $py - "$out/$name.json" > "$out/$name.txt" 2>&1 <<'EOF'
import json, sys
from runner.report import Result, render_text
print(render_text(Result.from_dict(json.load(open(sys.argv[1])))))
EOF
}

ref=challenges/medium/96_int8_kv_cache_attention/reference
profile cuda_ref "$ref/solution.cu"
profile one_block benchmarks/profile/one_block_per_head.cu
profile many_launches benchmarks/profile/many_launches.pytorch.py
profile sync_two_pass benchmarks/profile/sync_two_pass.pytorch.py
profile pytorch_ref "$ref/solution.pytorch.py"
# ncu in the jail even where the driver restricts counters to administrators: how it fails
GRADER_PROFILE_NCU=always profile cuda_ref_ncu_always "$ref/solution.cu"
# and without the jail (this user's rights): counters where the driver allows them
GRADER_PROFILE_NCU=always profile one_block_no_sandbox benchmarks/profile/one_block_per_head.cu --no-sandbox

# ncu outside the jail, straight on the process the jail runs under it (is ncu usable here at
# all, and at what cost): ncu_direct.csv
ncu=$($py -c "from runner.grader.profile.ncu import find_ncu; print(find_ncu() or '')")
if [ -n "$ncu" ] && [ $SECONDS -lt 430 ]; then
    $py - "$out/target.json" <<'PY'
import json, sys
from runner.protocol import Job
json.dump(Job(challenge_path="challenges/medium/96_int8_kv_cache_attention",
              solution_path="challenges/medium/96_int8_kv_cache_attention/reference/solution.pytorch.py",
              language="pytorch", device="cuda", action="submit", seed=0, perf_copies=1,
              nvcc_flags=[], gpu_memory_fraction=None).to_dict(), open(sys.argv[1], "w"))
PY
    start=$SECONDS
    timeout 90 "$ncu" --csv --page raw --profile-from-start off --launch-count 3 \
        --section SpeedOfLight $py -m runner.profile_target "$out/target.json" \
        > "$out/ncu_direct.csv" 2>&1
    printf 'ncu_direct\t%s\t%s\n' "$((SECONDS - start))" "$?" >> "$out/times.tsv"
fi

timeout 150 $py -m pytest -q -p no:cacheprovider tests/test_profile.py > "$out/tests.txt" 2>&1
echo "done: $out" >&2
