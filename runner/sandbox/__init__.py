"""Grading untrusted code in a jail: the parent side (:mod:`.parent`: starting the child,
:mod:`.watch`: the conversation with it, the limits and how it ended, :mod:`.limits`: the
limits as data, :mod:`.warm`: a jail started before its job), the child's entry point
(:mod:`.child`) and the jail itself (:mod:`.jail`: the bubblewrap command line and the seccomp
filter).

Nothing is imported here: the child must set itself up before torch starts any thread.
"""
