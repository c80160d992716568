#!/usr/bin/env bash
# One call of the device tool: phases of device_verify.sh in order, within a deadline, with
# what they wrote packed into $OUT/results.tgz after every phase (the tool returns at most 8
# files, and a call killed at its limit returns only what is already under $OUT):
#
#     bash benchmarks/device_call.sh SECONDS PHASE [PHASE ...]
#
# e.g. `GRADER_DEBS=.deb GRADER_WHEELS=.whl bash benchmarks/device_call.sh 540 clock clock2`
# with carry [".deb", ".whl"]. A phase gets what is left of SECONDS (SIGINT, then SIGKILL to
# its whole process group 15 s later); one with under 30 s left is skipped, and says so in
# times.txt. Keep SECONDS 40 or more under the call's limit (tar and the copy back).
set -uo pipefail
cd "$(dirname "$0")/.."
deadline=${1:?the seconds this call may take}
shift
[ $# -gt 0 ] || { echo "name at least one phase of benchmarks/device_verify.sh" >&2; exit 2; }
work=${DEVICE_CALL_DIR:-/tmp/device-call}
out=${OUT:-$work}
mkdir -p "$work" "$out"
start=$SECONDS
for phase in "$@"; do
    left=$((deadline - (SECONDS - start)))
    if [ "$left" -lt 30 ]; then
        echo "$phase skipped: ${left} s left" | tee -a "$work/times.txt"
        continue
    fi
    timeout -k 15 -s INT "$left" bash benchmarks/device_verify.sh "$phase" "$work/$phase" \
        > "$work/$phase.log" 2>&1
    echo "$phase rc=$? at $((SECONDS - start)) s" | tee -a "$work/times.txt"
    tail -15 "$work/$phase.log"
    [ "$out" != "$work" ] && tar czf "$out/results.tgz" -C "$work" .
done
