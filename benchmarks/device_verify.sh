#!/usr/bin/env bash
# The device checks of the trust, sandbox, floor and leaderboard work, in phases that each fit
# a 10-minute call on a fresh GPU machine (cold nvcc, CuPy and Triton caches):
#
#     bash benchmarks/device_verify.sh PHASE OUT
#
#   trust    every reference of 96, 97 and 98 and the correct solutions of tests/harness_solutions,
#            `submit` in the jail (96's also without it: the sandbox's cost), 96's CUDA five
#            times (repeatability), the private-stream solution (the burst's drain)
#   clock    issue 25, the grader's clock, `submit` in the jail, a table of every run's verdict,
#            timing mode, median, clock and ratio at the end (`ratio_over_band` must be empty,
#            `forgers_not_rejected` too): every reference of 96 and 97
#   clock2   the same: every reference of 98, and 97's CUDA reference beside the same kernel
#            on a non-blocking stream of its own (tests/corpus/nonblocking_stream_97.cu:
#            accepted, mode isolated, median at least the plain one's)
#   clock3   the same: the correct solutions of tests/harness_solutions, 96's non-blocking-stream
#            solution beside the same kernel on the current stream (cuda_correct.cu), the
#            private-stream one (device-sync) and the forgers (rejected)
#   board    the leaderboard through `serve` with a GPU worker (benchmarks/leaderboard_gpu.py;
#            screenshots afterwards on a machine with chromium: --show --data-dir OUT/board)
#   floors   benchmarks/floors.py and attention_96.py, then the GPU tests of the timer and probes
#   tune     issue 26: benchmarks/floor_probes.py (is the case floor's copy flattered by its
#            write-back? read kernels over 96's 66 MiB), then tune_attention_96.py's sweep
#   tests    the GPU tests of the languages (the submit ones are covered by `trust`)
#   gpu      every GPU test (`pytest -m gpu`) of GPU_TESTS (default: tests challenges), within
#            GPU_TESTS_TIMEOUT seconds (default 540; keep it under device_call.sh's deadline)
#   hostile  issue 24 (the jail's contents are hostile): the GPU corpus, the CUDA build jail, the
#            cgroups and the filter on this machine, then every reference of 96, 97 and 98 in
#            the jail against BASELINE (an older checkout, e.g. `git archive` of the commit
#            before, unpacked into .baseline), interleaved on the same GPU; HOSTILE_SOLUTIONS (CHALLENGE:FILE
#            words) narrows that list; BASELINE may name several checkouts (space-separated);
#            HOSTILE_TESTS=0 skips the pytest files (medians only)
#   medians  issues 24 and 27 in one run: every reference in the jail against .baseline27 (the
#            tree before issue 27) and, for the three that issue 24 has not yet measured,
#            against .baseline (the tree before issue 24) too, each with the grader's clock
#            (issue 25's ratios in the summary)
#   profile  issue 29: `--action profile` of 96's references and benchmarks/profile/'s fixtures
#            (benchmarks/profile_gpu.sh says what to look for)
#   latency  issue 28 (a verdict in seconds): the parked jail's GPU test and the corpus, then
#            benchmarks/judge_latency.py through `serve` with one GPU worker, prewarmed:
#            pickup-to-verdict p50/p95 of 96's CUDA (cached and fresh builds), Triton, PyTorch
#            and a wrong answer (LATENCY_REPEAT, default 4, each)
#   cold     the same latency run with --no-prewarm (the baseline; LATENCY_REPEAT, default 3)
#   queue    40 mixed submissions at once: gradings per GPU-minute, every verdict checked
#            (QUEUE_PREWARM=0 for the baseline)
#   warm     benchmarks/warm_jail.py: 96's references graded in-process in a cold, an early
#            and a parked jail (with and without its CUDA context), and a CUDA context's cost
#
# A machine without bubblewrap or the judge's packages gets them from folders named by
# GRADER_DEBS (Debian .debs of bubblewrap and libcap2, unpacked with dpkg -x into a folder of
# their own, never into /) and GRADER_WHEELS (wheels of pyseccomp and the judge extra for the
# device's Python). Results and logs go under OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
phase=${1:?phase: trust, clock, clock2, clock3, board, floors, tune, gpu, tests, hostile, medians, profile, latency, cold, queue or warm}
out=${2:?an output folder}
case "$phase" in trust|clock|clock2|clock3|board|floors|tune|gpu|tests|hostile|medians|profile|latency|cold|queue|warm) ;; *)
    echo "unknown phase $phase: see the header of $0" >&2
    exit 2 ;;
esac
mkdir -p "$out"

if [ -d "${GRADER_DEBS:-}" ]; then
    for deb in "$GRADER_DEBS"/*.deb; do dpkg -x "$deb" /tmp/grader-bwrap; done
    command -v bwrap >/dev/null || export GRADER_BWRAP=/tmp/grader-bwrap/usr/bin/bwrap
    # libseccomp for the jail's filter, where the machine has none (pyseccomp finds it
    # through LD_LIBRARY_PATH; the jail shows that folder to a GPU grading)
    if ! ldconfig -p | grep -q libseccomp.so.2; then
        export LD_LIBRARY_PATH=/tmp/grader-bwrap/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
fi
if [ -d "${GRADER_WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/grader-site "$GRADER_WHEELS"/*.whl
    export PYTHONPATH=/tmp/grader-site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > "$out/gpu.csv" 2>&1

# every reference solution of challenge $1 (its number), as trust_check.py's NUMBER:FILE
refs() { for f in challenges/*/"$1"_*/reference/solution.*; do printf '%s:%s ' "$1" "$f"; done; }
case "$phase" in
profile)
    bash benchmarks/profile_gpu.sh "$out"
    ;;
trust)
    trust="python3 benchmarks/trust_check.py --out $out/trust.jsonl"
    $trust $(refs 96) --modes jail,no-sandbox
    $trust $(refs 97) $(refs 98) \
        96:tests/harness_solutions/cuda_correct.cu 96:tests/harness_solutions/cupy_correct.cupy.py \
        96:tests/harness_solutions/cupy_array.cupy.py 96:tests/harness_solutions/cupy_elementwise.cupy.py \
        96:tests/corpus/private_stream.pytorch.py
    $trust 96:challenges/medium/96_int8_kv_cache_attention/reference/solution.cu --repeat 4
    ;;
clock)
    python3 benchmarks/trust_check.py --out "$out/clock.jsonl" --summary \
        $(refs 96) $(refs 97) 2>&1 \
        | tee "$out/clock.log"
    ;;
clock2)
    python3 benchmarks/trust_check.py --out "$out/clock2.jsonl" --summary \
        $(refs 98) 97:challenges/medium/97_int8_kv_cache_quantize/reference/solution.cu \
        97:tests/corpus/nonblocking_stream_97.cu 2>&1 | tee "$out/clock2.log"
    ;;
clock3)
    python3 benchmarks/trust_check.py --out "$out/clock3.jsonl" --summary \
        96:tests/harness_solutions/cuda_correct.cu 96:tests/corpus/nonblocking_stream.cu \
        96:tests/harness_solutions/cupy_correct.cupy.py 96:tests/harness_solutions/cupy_array.cupy.py \
        96:tests/harness_solutions/cupy_elementwise.cupy.py 96:tests/corpus/private_stream.pytorch.py \
        96:tests/corpus/forged_timing_patch.pytorch.py \
        96:tests/corpus/forged_timing_fd_swap.pytorch.py 2>&1 | tee "$out/clock3.log"
    ;;
board)
    python3 benchmarks/leaderboard_gpu.py --out "$out/shots" --data-dir "$out/board" \
        2>&1 | tee "$out/board.log"
    ;;
floors)
    python3 benchmarks/floors.py 96 97 98 --out "$out" 2>&1 | tee "$out/floors.log"
    python3 benchmarks/attention_96.py --out "$out" 2>&1 | tee "$out/attention_96.log"
    timeout -k 20 -s INT 240 python3 -m pytest -m gpu -v -p no:cacheprovider \
        tests/test_timing_gpu.py tests/test_trust_gpu.py 2>&1 | tee "$out/pytest_floors.log"
    ;;
hostile)
    { cat /proc/self/cgroup; grep cgroup /proc/self/mountinfo; } > "$out/cgroups.txt" 2>&1
    [ "${HOSTILE_TESTS:-1}" = 0 ] || { timeout -k 20 -s INT 150 python3 -m pytest -m "gpu or not gpu" -q -p no:cacheprovider \
        tests/test_cgroups.py tests/test_jail.py tests/test_cuda_build_jail.py 2>&1 | tail -30
      timeout -k 20 -s INT 150 python3 -m pytest -m gpu -q -p no:cacheprovider \
        tests/test_sandbox_corpus.py 2>&1 | tail -30; } > "$out/pytest_hostile.log"
    modes=jail
    for baseline in ${BASELINE:-.baseline}; do modes="$modes,old:$baseline"; done
    python3 benchmarks/trust_check.py --out "$out/hostile.jsonl" --modes "$modes" --summary \
        ${HOSTILE_SOLUTIONS:-$(refs 96) $(refs 97) $(refs 98)} 2>&1 \
        | tee "$out/hostile_medians.log" | tail -40
    ;;
medians)
    r97=challenges/medium/97_int8_kv_cache_quantize/reference
    r98=challenges/hard/98_paged_int8_decode_attention/reference
    first="97:$r97/solution.triton.py 98:$r98/solution.cu 98:$r98/solution.triton.py"
    rest=$(refs 96; for f in "$r97"/solution.cu "$r97"/solution.pytorch.py "$r98"/solution.pytorch.py; do
        n=${f#challenges/*/}; printf '%s:%s ' "${n%%_*}" "$f"; done)
    python3 benchmarks/trust_check.py --out "$out/medians.jsonl" --summary \
        --modes jail,old:.baseline27,old:.baseline $first 2>&1 | tee "$out/medians_24.log" | tail -20
    python3 benchmarks/trust_check.py --out "$out/medians.jsonl" --summary \
        --modes jail,old:.baseline27 $rest 2>&1 | tee "$out/medians_27.log" | tail -30
    ;;
latency)
    timeout -k 20 -s INT 120 python3 -m pytest -m "gpu or not gpu" -q -p no:cacheprovider \
        tests/test_warm_jail.py 2>&1 | tail -15 > "$out/pytest_warm.log"
    timeout -k 20 -s INT 420 python3 benchmarks/judge_latency.py --repeat "${LATENCY_REPEAT:-4}" \
        --queue 0 --out "$out/latency" 2>&1 | tee "$out/latency.log" | tail -40
    ;;
cold)
    timeout -k 20 -s INT 560 python3 benchmarks/judge_latency.py --repeat "${LATENCY_REPEAT:-3}" \
        --queue 0 --no-prewarm --out "$out/cold" 2>&1 | tee "$out/cold.log" | tail -40
    ;;
queue)
    flag=""; [ "${QUEUE_PREWARM:-1}" = 0 ] && flag=--no-prewarm
    timeout -k 20 -s INT 560 python3 benchmarks/judge_latency.py --repeat 0 --queue 40 $flag \
        --kinds cuda,triton,pytorch,wrong --out "$out/queue" 2>&1 | tee "$out/queue.log" | tail -30
    ;;
warm)
    timeout -k 20 -s INT 560 python3 benchmarks/warm_jail.py --repeat "${WARM_REPEAT:-3}" \
        --out "$out/warm" 2>&1 | tee "$out/warm.log" | tail -25
    ;;
tune)
    timeout -k 20 -s INT 120 python3 benchmarks/floor_probes.py --out "$out" 2>&1 | tee "$out/floor_probes.log"
    timeout -k 20 -s INT 400 python3 benchmarks/tune_attention_96.py --out "$out" 2>&1 \
        | tee "$out/tune_attention_96.log"
    ;;
gpu)
    timeout -k 20 -s INT "${GPU_TESTS_TIMEOUT:-540}" python3 -m pytest -m gpu -v -p no:cacheprovider \
        ${GPU_TESTS:-tests challenges} 2>&1 | tee "$out/pytest_gpu.log" | tail -40
    ;;
tests)
    timeout -k 20 -s INT 540 python3 -m pytest -m gpu -v -p no:cacheprovider \
        tests/test_languages_gpu.py -k "not submit" 2>&1 | tee "$out/pytest_languages.log"
    ;;
esac
