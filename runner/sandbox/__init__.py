"""Grading untrusted code in a jail: the parent side (:mod:`.parent`: limits, watching,
the conversation with the child), the child's entry point (:mod:`.child`) and the jail itself
(:mod:`.jail`: the bubblewrap command line and the seccomp filter).

Nothing is imported here: the child must set itself up before torch starts any thread.
"""
