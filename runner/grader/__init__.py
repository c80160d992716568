"""The trusted side of a grading: everything that decides whether a submission is right and
how fast it is, and nothing the submission's process runs.

:mod:`.grade` is the entry (the CLI's and the judge's job process's), :mod:`.options` what a
caller asks, :mod:`.plan` the cases and their expected outputs, :mod:`.conversation` the checks
of every report the child sends, :mod:`.clock` the grader's own clock, :mod:`.performance` the
time settled against physics and that clock, :mod:`.truth` the float64 rule, :mod:`.verdict`
the one rule that turns the evidence into a verdict; :mod:`.profile` is ``--action profile``'s
side. The submission side (``runner.execute``, ``runner.sandbox.child``, ``runner.languages``,
``runner.timing``, ``runner.buffers``, ``runner.profiling``) never imports this package.
"""
