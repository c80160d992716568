"""The grading policy's numbers: every figure that decides a verdict, a limit or how a
submission is timed, in one place, each with the reason it has its value.

A challenge author, a judge operator or a reviewer of fairness reads them here; the modules
that apply them import them from here (``from runner.policy import PHYSICS_MARGIN``), so a
test that changes one for a module patches that module's name. What is no policy stays where
it is used: a pattern, a buffer size inside one function, a list of syscalls, a message's
schema, the judge service's own bookkeeping (its config file's limits are
:mod:`runner.judge.config`; where they and the grader share a knob, the default is here).

Both sides of the trust boundary import this module (the jail's child reads its limits
here): it imports nothing.
"""

# -- Timing the solve (runner.timing, runner.execute) ---------------------------------------

TIME_BUDGET_S = 3.0          # seconds of timed runs per implementation (solution, reference); a
#                              judge worker may set its own (--time-budget)
TARGET_REL_SEM = 0.01        # the timed runs stop once the mean is known within 1%
WARMUP_RUNS = 3              # untimed calls first: lazy builds, caches and clocks settle
MIN_TIMED_RUNS = 10          # fewer runs give no standard error worth the name
MAX_TIMED_RUNS = 1000        # at most this many (each keeps its outputs until the grader has named
#                              the ones it checks)
CHECKED_RUNS = 4             # timed runs (and burst calls) whose outputs the grader checks in full
FLUSH_MIN_BYTES = 256 * 2**20   # the L2 flush reads four times the L2, and at least this
LINGER_MIN_S = 100e-6        # GPU work outliving a run by more (and by half the run) is billed:
#                              the run is timed again to a device-wide synchronize
RETAIN_BYTES = 32 * 2**30    # GPU memory for the timed runs' outputs (at most a quarter of
#                              what is free)
INTERPRETED_PERF_BYTES = 256 * 2**20   # Triton's CPU interpreter runs a kernel about a
#                              thousand times slower than a GPU: on a larger case (98's, 1.1 GB)
#                              the performance case alone takes minutes; not run there

# -- The grader's own clock: bursts of real and null calls (runner.grader.clock) -------------

BURST_S = 1.0                # the long bursts' total length: long enough to swamp the clock's noise
BURST_COVER_S = 1e-3         # the spin a burst starts behind, so its first launches queue up
BURST_ROUNDS = 3             # rounds of four bursts: real and null, short and long, in random order
MAX_BURST_ROUNDS = 7         # ...more where the output sets cap the bursts' length (97)
SHORT_PART = 4               # the short bursts are a quarter of the long ones (the slope's base)
MAX_BURST_CALLS = 4000       # the slope over two lengths drops a burst's fixed cost: no burst
#                              needs more
BURST_FLUSH_BYTES = 2**30    # the most the child reads before each call of a burst (its L2 flush)
BURST_CHECKED = 2            # calls checked in full per real burst (the last and one at random)
PROBE_BYTES = 384 * 1024     # the burst probe's bytes at most (512 KiB as base64: one message line)
HOST_COVER = 1.5             # each burst call's GPU work is made this many times its host time
NULL_SLACK = 0.03            # the child's null burst is believed up to 3% above the grader's own
SKIPPED_BELOW = 0.8          # a real burst faster than this share of the grader's own null burst
#                              did not do the grader's per-call work (its flush): not corroborated

# -- Physics and the clocks' agreement (runner.grader.performance; the judge's leaderboards) 

PHYSICS_MARGIN = 1.08        # a time may imply at most this much of the measured bandwidth ceiling
CLOCK_BAND = 0.25            # the grader's clock may read this much above the timed runs' mean
CLOCK_REJECT = 3.0           # ...and this many times above it is a contradiction (see the
#                              README's Timing section for what honest solutions read)
CLOCK_REJECT_HOST = 10.0     # on a CPU (tests: ``time_on_cpu``), whose shared clock is noisier
CLOCK_SLACK_MS = 2e-3        # the slope's noise per call: what the band forgives a tiny kernel
CLOCK_HOLD = 1 + CLOCK_BAND  # a leaderboard holds an entry whose grader's clock read more than
#                              this many times the timed runs' mean (issue 25: was 1.5)
LEADERBOARD_BAND = 0.10      # a leaderboard's verification median must agree within 10%

# -- Accuracy against float64 (runner.grader.truth) -------------------------------------------

TRUTH_MARGIN = 1.0           # the solution may be as far off, in tolerances, as the reference
MAX_TRUTH_BYTES = 4 * 2**30  # a case larger than this (its float64 copy) is not re-run

# -- The jail's limits (runner.sandbox.limits: ``Limits``' defaults; the judge's config sets its own
# TIME_LIMIT_S and HOST_MEMORY_BYTES, defaulting to these)

TIME_LIMIT_S = 300.0         # wall clock of one grading from the child's "ready" (Triton's build
#                              included; a CUDA build comes before it, under BUILD_TIMEOUT_S)
STARTUP_LIMIT_S = 300.0      # wall clock for the jail's interpreter and torch to start
HOST_MEMORY_BYTES = 16 * 2**30   # resident host memory of every process in the jail
MAX_PROCESSES = 64           # processes in the jail at once
MAX_THREADS = 1024           # threads in the jail at once
DISK_BYTES = 4 * 2**30       # the jail's only writable place, a size-capped tmpfs
SHM_BYTES = 256 * 2**20      # the jail's /dev/shm
OUTPUT_BYTES = 64 * 1024     # the submission's captured stdout and stderr kept in the result
KILL_WAIT_S = 10.0           # after SIGKILL, wait this long for the child to be reaped (a GPU
#                              context's teardown), then go on
RLIMIT_FILE_BYTES = 1 << 30  # the largest file the child may write (RLIMIT_FSIZE)
RLIMIT_PROCESSES = 256       # the jail user's RLIMIT_NPROC is this times 8 (a backstop: the
#                              parent's process and thread limits are the ones that bind)
QUIET_MAX_S = 5.0            # the longest the limits go unpolled while the grader times a burst
MAX_LINE_BYTES = 1 << 20     # one message line from the child at most (a longer one comes in
#                              pieces, which are not JSON: the jail is stopped)
MAX_PROGRESS = 1000          # progress lines passed on per grading (the child may flood)
GUARD_BYTES = 4096           # poisoned bytes on each side of an output: writes past it are caught
PARK_WAIT_S = 120.0          # a jail started ahead and not parked this long after is given up
#                              (the grading starts a cold one)
INTERPRETER_TIMEOUT_S = 1200.0   # the CLI's time limit for Triton's CPU interpreter (slow)

# -- Building a CUDA solution (runner.languages.nvcc, cuda_build: nvcc in a jail of its own) --

BUILD_TIMEOUT_S = 120.0      # one nvcc build, wall clock
BUILD_MEMORY_BYTES = 16 * 2**30   # resident memory of every process of the build
BUILD_TMP_BYTES = 2 * 2**30  # the build jail's /tmp (a tmpfs: nvcc's temporaries)
BUILD_MAX_PROCESSES = 64     # processes of one build at once
BUILD_MAX_FILE_BYTES = 1 * 2**30     # RLIMIT_FSIZE of every process of the build
BUILD_MAX_OUTPUT_BYTES = 1 * 2**30   # the output folder's size during the build
BUILD_MAX_LIBRARY_BYTES = 512 * 2**20   # a bigger "library" is refused
BUILD_MAX_CAPTURE_BYTES = 1 * 2**20     # nvcc's output kept (the rest is read and dropped)
BUILD_LOG_LINES = 50         # the compiler's log shown in a verdict, lines...
BUILD_LOG_BYTES = 8192       # ...and bytes

# -- The judge's workers (runner.judge: the config's `leases`, a worker's command line) ------

WATCHDOG_MARGIN_S = 30.0     # a worker stops a grading this long past its time limit
STARTUP_ALLOWANCE_S = 60.0   # the watchdog's extra time before a job's first progress line
# a fleet's queue (Dramatiq on Redis): the config's `queue` and a worker's command line
QUEUE_NAMESPACE = "judge"    # the Redis key prefix: two judges on one Redis need two
HEARTBEAT_TIMEOUT_MS = 60_000   # a consumer silent this long is dead (its messages go back)
MAINTENANCE_CHANCE = 1000    # the broker's clean-up, per million broker commands

# -- Authoring rules (--action validate, runner.authoring) -------------------------------------

MEMORY_BUDGET_BYTES = 16 * 10**9   # a 16 GB GPU (LeetGPU's T4) ...
MEMORY_FACTOR = 5                  # ... must hold 5 copies of the performance case
FLOAT64_PERF_BYTES = 8 * 2**30     # the performance case is recomputed in float64 where its
#                                    float64 copy fits this (else skipped)
REALISTIC_FRACTION = 64      # some functional case must be at least 1/64 of the performance case
DESCRIPTION_MIN_CHARS = 40   # a challenge's description says at least this much
