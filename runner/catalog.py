"""Finding challenges (by folder, number or slug), their starters, reference solutions and the
user's solution file.

A challenge folder holds its whole contract: ``challenge.py``, ``challenge.html``, ``starter/``
(``starter.cu``, ``starter.triton.py``, ...), ``reference/`` (our solutions: ``solution.cu``,
...), ``solutions/wrong/`` (known-bad solutions its tests use) and its tests. LeetGPU's
challenge folders have the same ``starter/``, so one search path serves both formats: a
challenge's starters and references are found in its own folder and nowhere else.

Nothing here imports torch, so the commands that only look things up (``--help``,
``--action list``, a mistyped challenge) start in a fraction of a second.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from runner import environment, languages
from runner.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent
CHALLENGES_DIR = REPO_ROOT / "challenges"


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


@dataclass
class ChallengeInfo:
    """A challenge folder found on disk."""

    path: Path
    number: Optional[int]
    slug: str
    difficulty: str

    @property
    def display(self) -> str:
        return f"{self.number}_{self.slug}" if self.number is not None else self.slug


_FOLDER_RE = re.compile(r"^(\d+)_(.+)$")


def challenge_info(path: Path) -> ChallengeInfo:
    match = _FOLDER_RE.match(path.name)
    number, slug = (int(match.group(1)), match.group(2)) if match else (None, path.name)
    return ChallengeInfo(path=path, number=number, slug=slug, difficulty=path.parent.name)


def as_challenges_folder(path: Path) -> Path:
    """A checkout of a challenge repository (LeetGPU's keeps its set in ``challenges/``) or the
    challenges folder itself."""
    inner = path / "challenges"
    if inner.is_dir() and not (path / "challenge.py").is_file() \
            and not any(path.glob("*/*/challenge.py")) and not any(path.glob("*/challenge.py")):
        return inner
    return path


def challenge_roots() -> List[Path]:
    """Where challenges are looked for: each folder in ``$CHALLENGES_PATH`` (separated by
    ``os.pathsep``; a checkout of LeetGPU's challenge repository or its ``challenges/`` folder),
    in order, then this repository's ``challenges/``. The first root holding a match wins."""
    roots: List[Path] = []
    for entry in environment.challenge_paths():
        roots.append(as_challenges_folder(Path(entry).expanduser().resolve()))
    roots.append(CHALLENGES_DIR)
    return list(dict.fromkeys(roots))


def discover(root: Optional[Path] = None) -> List[ChallengeInfo]:
    """The challenges under ``root`` (default: every folder of :func:`challenge_roots`, in that
    order), each root's sorted by number. ``root`` may be a challenges folder
    (``<difficulty>/<number>_<slug>/challenge.py``), a checkout holding one in ``challenges/``,
    a difficulty folder, or one challenge's folder."""
    if root is None:
        found: List[ChallengeInfo] = []
        for each in challenge_roots():
            found += discover(each)
        return found
    root = as_challenges_folder(Path(root))
    if (root / "challenge.py").is_file():
        return [challenge_info(root.resolve())]
    found = [challenge_info(p.parent) for p in [*root.glob("*/*/challenge.py"),
                                           *root.glob("*/challenge.py")]]
    return sorted(found, key=lambda c: (c.number is None, c.number or 0, c.slug))


class UnknownChallenge(LookupError):
    def __init__(self, query: str, suggestions: List[str]):
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"no challenge matches {query!r}.{hint} "
                         f"(`python run_challenge.py --action list` shows them all)")


def find_challenge(query: str, root: Optional[Path] = None) -> ChallengeInfo:
    """Resolve a folder path, a number (``96``) or a slug (``int8_kv_cache_attention``), looked
    up in ``root`` (default: every folder of :func:`challenge_roots`)."""
    as_path = Path(query)
    if (as_path / "challenge.py").is_file():
        return challenge_info(as_path.resolve())
    known = discover(root)
    for info in known:
        if query in (str(info.number), info.slug, info.path.name):
            return info
    by_name = {c.path.name: c for c in known} | {c.slug: c for c in known}
    close = [by_name[n].path.name for n in difflib.get_close_matches(query, by_name, n=6, cutoff=0.5)]
    close += [c.path.name for c in known if query and query in c.path.name]
    close = list(dict.fromkeys(close))
    raise UnknownChallenge(query, close[:3])


# -- what a grading jail shows -----------------------------------------------------------------

_TEST_MODULE = re.compile(r"^(test_.*|.*_test|conftest)\.py$")


def loading_files(folder: Path) -> List[Path]:
    """What loading the challenge in ``folder`` needs, and all of the folder a grading jail
    shows (:func:`runner.sandbox.parent.jail_paths`): ``challenge.py`` and the Python modules
    beside it (a LeetGPU challenge may import one). Never a subfolder (its starters, our
    reference solutions, its known-bad solutions, its tests: a submission must not read them)
    nor a test module."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix == ".py" and p.is_file() and not _TEST_MODULE.match(p.name))


# -- starters and reference solutions ----------------------------------------------------------

def _language_files(folder: Path, stem: str) -> Dict[str, Path]:
    found: Dict[str, Path] = {}
    for language in languages.LANGUAGES:
        candidate = folder / f"{stem}{languages.suffix(language)}"
        if candidate.is_file():
            found[language] = candidate
    return found


def starter_folder(info: ChallengeInfo) -> Path:
    """The challenge's ``starter/`` (this repository's layout and LeetGPU's)."""
    return info.path / "starter"


def starter_files(info: ChallengeInfo) -> Dict[str, Path]:
    """language -> starter file, for each language that has one."""
    return _language_files(starter_folder(info), "starter")


def reference_folder(info: ChallengeInfo) -> Path:
    """The challenge's ``reference/``: our solutions (LeetGPU's folders have none)."""
    return info.path / "reference"


def reference_files(info: ChallengeInfo) -> Dict[str, Path]:
    """language -> our reference solution, for each language that has one."""
    return _language_files(reference_folder(info), "solution")


# -- the user's solution ----------------------------------------------------------------------

def default_solution_dir(info: ChallengeInfo) -> Path:
    return info.path / "solution"


def refuse_folder(solution: Path) -> None:
    """A folder given as the solution: a usage error saying so (not "cannot tell the language"
    or "does not exist")."""
    if solution.is_dir():
        inside = sorted(p.name for p in solution.glob("solution.*") if p.is_file())
        hint = (f" (it holds {', '.join(inside)})" if inside else "")
        raise UsageError(f"--solution {solution} is a folder: name the solution file in it{hint}")


def resolve_solution(info: ChallengeInfo, solution: Optional[Path],
                     language: Optional[str]) -> Tuple[Path, str]:
    """The solution file and its language: ``solution`` when given, else the one file
    ``<challenge>/solution/solution.*`` (of ``language`` when given)."""
    if solution is None:
        folder = default_solution_dir(info)
        if language:
            solution = folder / f"solution{languages.suffix(language)}"
        else:
            found = sorted(p for p in folder.glob("solution.*") if p.is_file()) if folder.is_dir() else []
            if len(found) != 1:
                raise UsageError(
                    f"no solution given: pass --solution FILE or --language L "
                    f"(`--action init --language L` creates {folder}/solution.<ext> from the starter)"
                    if not found else
                    f"several solutions in {folder}: pass --solution or --language")
            solution = found[0]
    refuse_folder(solution)
    lang = languages.normalize(language) if language else languages.detect(solution)
    if not solution.is_file():
        raise UsageError(f"solution file {solution} does not exist; create it with "
                         f"`python run_challenge.py {info.display} --action init --language {lang}`")
    return solution, lang
