"""``--action profile``'s grader side: :mod:`.grading` (a submit without timing, then the
``profile`` command), :mod:`.ncu` (where Nsight Compute may run; its CSV read as hostile text),
:mod:`.diagnosis` (the diagnosis in words), :mod:`.report` (the ``profile`` section and its text)."""
