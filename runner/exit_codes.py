"""Every exit code a command of this repository ends with, in one place."""

EXIT_OK = 0              # accepted (or, for CUDA without a GPU, compiled); a command that worked
EXIT_REJECTED = 1        # any other verdict
EXIT_USAGE = 2           # a usage error: unknown challenge, missing file, bad option, judge refusal
EXIT_STUCK = 70          # a judge worker whose job thread was stuck past every bound
EXIT_INTERRUPTED = 130   # Ctrl-C
