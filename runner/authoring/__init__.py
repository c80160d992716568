"""Tools for challenge authors: ``--action validate`` (every rule of the challenge format,
checked by a command) and ``--action list``. See ``docs/authoring.md``."""
