"""The shape of the house (docs/architecture.md), checked from the source with ``ast`` alone:
no import circle among ``runner.*`` modules, and no module too long to read in one sitting."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "runner"
MAX_LINES = 450

# modules allowed past MAX_LINES, and why (none today; an entry must name its reason)
LONG_MODULES_ALLOWED: Dict[str, str] = {}

# import circles allowed for now, and why (an entry must name its reason, and goes once the
# circle does)
CIRCLES_ALLOWED: Dict[str, str] = {}


def module_files() -> Dict[str, Path]:
    found = {}
    for path in sorted(RUNNER.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


ANNOTATED_MODULE = re.compile(r"\brunner(?:\.\w+)+")


def _string_annotations(tree: ast.AST) -> List[str]:
    """The ``runner.*`` names written in string annotations (``x: "runner.grader.Plan"``)."""
    found: List[str] = []
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, ast.arg):
            annotations.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for annotation in annotations:
            for sub in ast.walk(annotation) if annotation is not None else ():
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    found += ANNOTATED_MODULE.findall(sub.value)
    return found


def imported_names(tree: ast.AST, package: str) -> List[str]:
    """Every ``runner.*`` name a module's source imports or annotates with: at module level,
    inside functions, under ``if TYPE_CHECKING:`` and in string annotations (a circle of
    annotations is a circle all the same: neither module reads without the other)."""
    names: List[str] = list(_string_annotations(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                       # relative: from the package upwards
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return [n for n in names if n == "runner" or n.startswith("runner.")]


def import_graph() -> Dict[str, Set[str]]:
    """module -> the runner modules it imports (:func:`imported_names`)."""
    modules = module_files()

    def known(name: str):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in imported_names(tree, package):
            found = known(target)
            if found and found != name:
                graph[name].add(found)
    return graph


def circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions_and_for_annotations():
    graph = import_graph()
    assert "runner.grader.grade" in graph["runner.cli"]     # a lazy import (torch)
    assert "runner.catalog" in graph["runner.judge.client"]
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n"
              "    from runner.grader.options import GradeOptions\n"
              "def f(x: 'runner.grader.plan.Plan') -> 'Optional[runner.report.Result]': ...\n")
    assert sorted(imported_names(ast.parse(source), "runner")) == [
        "runner.grader.options", "runner.grader.options.GradeOptions",
        "runner.grader.plan.Plan", "runner.report.Result"]


def test_no_import_circle_among_runner_modules():
    found = {" <-> ".join(c) for c in circles(import_graph())}
    stale = sorted(set(CIRCLES_ALLOWED) - found)
    assert not stale, f"allowed circles that are gone (drop them from the list): {stale}"
    found -= set(CIRCLES_ALLOWED)
    assert not found, "import circles (each a set of modules that import one another, " \
                      "directly or not, annotations counted): " + "; ".join(sorted(found))


def test_no_module_is_too_long():
    too_long = {}
    for name, path in module_files().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and name not in LONG_MODULES_ALLOWED:
            too_long[name] = lines
    stale = [n for n in LONG_MODULES_ALLOWED
             if n not in module_files()
             or len(module_files()[n].read_text(encoding="utf-8").splitlines()) <= MAX_LINES]
    assert not stale, f"allowed as long but no longer long (drop them from the list): {stale}"
    assert not too_long, "modules over %d lines (split them along a seam): %s" % (
        MAX_LINES, ", ".join(f"{n} ({k} lines)" for n, k in sorted(too_long.items())))


# -- the import rules of docs/architecture.md ("Rules of the imports") --------------------------

# the modules that run in the jail, next to the submission: they may not reach the grader
SUBMISSION_SIDE = ("runner.sandbox.child", "runner.execute", "runner.languages", "runner.timing",
                   "runner.buffers", "runner.profiling", "runner.profile_target")
# the grader's own modules: expected outputs, the checks, the clock, the verdict, the jail's keeper
GRADER_SIDE = ("runner.grader", "runner.sandbox.parent", "runner.sandbox.watch",
               "runner.sandbox.warm", "runner.judge")


def reach(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    """Every runner module ``start`` imports, directly or through others."""
    seen: Set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_submission_side_never_reaches_the_grader():
    graph = import_graph()
    found = {name: sorted(m for m in reach(graph, name) if _under(m, GRADER_SIDE))
             for name in graph if _under(name, SUBMISSION_SIDE)}
    found = {k: v for k, v in found.items() if v}
    assert not found, f"submission-side modules reaching the grader's: {found}"


def test_the_report_and_the_client_never_reach_the_grader():
    """A result is rendered by the CLI and by the remote client (``--remote``) alike: the
    rendering lives outside the grader, so a client reaches none of the grader's modules."""
    graph = import_graph()
    found = {name: sorted(m for m in reach(graph, name) if _under(m, ("runner.grader",)))
             for name in ("runner.report", "runner.profile_text", "runner.judge.client")}
    found = {k: v for k, v in found.items() if v}
    assert not found, f"rendering or the client reaching the grader: {found}"


def test_only_the_cli_reaches_the_judge():
    graph = import_graph()
    outside = {name: sorted(m for m in graph[name] if _under(m, ("runner.judge",)))
               for name in graph if not _under(name, ("runner.judge", "runner.cli"))}
    outside = {k: v for k, v in outside.items() if v}
    assert not outside, f"modules other than runner.cli importing the judge: {outside}"


def _module_level_imports(path: Path) -> List[str]:
    """The names a module imports when it is imported (not inside functions)."""
    names: List[str] = []

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                names.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names.append(node.module or "")
                names.extend(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, (ast.If, ast.Try)) and "TYPE_CHECKING" not in ast.unparse(
                    getattr(node, "test", ast.Constant(0))):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return names


def test_the_sandbox_package_imports_nothing_and_the_catalog_no_torch():
    init = RUNNER / "sandbox" / "__init__.py"
    assert not [n for n in _module_level_imports(init) if n != "__future__"
                and not n.startswith("__future__.")], \
        "runner/sandbox/__init__.py must import nothing (the child sets itself up first)"
    modules = module_files()
    seen, todo = set(), ["runner.catalog"]
    while todo:                       # what importing runner.catalog imports, module by module
        name = todo.pop()
        seen.add(name)
        for target in _module_level_imports(modules[name]):
            assert target != "torch" and not target.startswith("torch."), \
                f"{name} (imported with runner.catalog) imports torch: --help would be slow"
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in seen:
                todo.append(target)
    assert len(seen) > 1, "the walk found nothing: runner.catalog imports runner modules"


def test_the_rules_see_a_breach():
    """The checks above are not vacuous: a graph with a submission-side module reaching the
    grader, and a module importing the judge, is caught."""
    graph = {"runner.execute": {"runner.cases"}, "runner.cases": {"runner.grader.plan"},
             "runner.grader.plan": set(), "runner.report": {"runner.judge.store"},
             "runner.judge.store": set()}
    assert "runner.grader.plan" in reach(graph, "runner.execute")
    assert _under("runner.grader.plan", GRADER_SIDE) and _under("runner.execute", SUBMISSION_SIDE)
    assert _under("runner.judge.store", ("runner.judge",)) and not _under("runner.judgement", ("runner.judge",))


# -- one folder per challenge (issue 27) ---------------------------------------------------------
# Every challenge folder in challenges/ holds its whole contract: challenge.py, challenge.html,
# starter/ with a starter of at least one language, reference/ with at least one of our
# solutions, solutions/wrong/ with at least one known-bad solution (its tests use them), and its
# test modules in tests/. Nothing of a challenge lives outside its folder: no top-level
# starter_code/ or reference/ folder, no test module test_challenge_<number>* under tests/, and
# no file under tests/ or benchmarks/ whose name holds a challenge's slug (benchmarks/results/,
# what the benchmarks wrote, excepted; the benchmarks themselves, e.g. tune_attention_96.py,
# name a number).

def _solution_files(folder: Path) -> List[Path]:
    from runner import languages

    suffixes = tuple(languages.suffix(language) for language in languages.LANGUAGES)
    return sorted(p for p in folder.glob("*") if p.is_file() and p.name.endswith(suffixes))


def layout_problems(repo: Path) -> List[str]:
    """Every breach of the per-challenge layout in the checkout at ``repo``."""
    from runner.catalog import discover

    found = discover(repo / "challenges")
    problems = [] if found else ["no challenge found in challenges/"]
    for info in found:
        where = info.path.relative_to(repo)
        problems += [f"{where} has no {name}" for name in ("challenge.py", "challenge.html")
                     if not (info.path / name).is_file()]
        shipped = {"starter/": [p for p in _solution_files(info.path / "starter")
                                if p.name.startswith("starter.")],
                   "reference/": [p for p in _solution_files(info.path / "reference")
                                  if p.name.startswith("solution.")],
                   "solutions/wrong/": _solution_files(info.path / "solutions" / "wrong"),
                   "tests/": sorted((info.path / "tests").glob("test_*.py"))}
        problems += [f"{where}/{sub} is empty" for sub, files in shipped.items() if not files]
    problems += [f"{name}/ exists outside the challenge folders"
                 for name in ("starter_code", "reference") if (repo / name).exists()]
    problems += [f"{p.relative_to(repo)} is a challenge's test module outside its folder"
                 for p in (repo / "tests").rglob("test_challenge_[0-9]*")]
    slugs = {info.slug for info in found}
    for top in ("tests", "benchmarks"):
        for path in (repo / top).rglob("*"):
            inside = path.relative_to(repo)
            if inside.parts[:2] == ("benchmarks", "results"):
                continue
            problems += [f"{inside} is named after challenge {slug!r}: it belongs in its folder"
                         for slug in slugs if slug in path.name]
    return problems


def test_every_challenge_folder_holds_its_whole_contract():
    assert layout_problems(REPO) == []


def test_the_layout_rule_sees_a_breach(tmp_path):
    """A challenge without reference solutions or known-bad ones, a starter left in
    starter_code/, a test module and a benchmark named after it outside its folder: each is
    caught."""
    folder = tmp_path / "challenges" / "easy" / "1_row_scale"
    (folder / "starter").mkdir(parents=True)
    (folder / "tests").mkdir()
    for name in ("challenge.py", "challenge.html", "starter/starter.cu",
                 "tests/test_challenge_1.py"):
        (folder / name).write_text("")
    (tmp_path / "starter_code" / "row_scale").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_challenge_1.py").write_text("")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "tune_row_scale.py").write_text("")
    (tmp_path / "benchmarks" / "results" / "row_scale.md").write_text("")   # a result: allowed
    problems = layout_problems(tmp_path)
    assert problems == ["challenges/easy/1_row_scale/reference/ is empty",
                        "challenges/easy/1_row_scale/solutions/wrong/ is empty",
                        "starter_code/ exists outside the challenge folders",
                        "tests/test_challenge_1.py is a challenge's test module outside its folder",
                        "benchmarks/tune_row_scale.py is named after challenge 'row_scale': it "
                        "belongs in its folder"], problems


def where_to_change(page: str) -> List[str]:
    """The repository paths that docs/architecture.md's "Where to change what" names."""
    section = page[page.index("## Where to change what"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"`((?:runner|challenges)/[^`<>]+?)`", section)


def test_the_architecture_page_names_files_that_exist():
    """The page answers "which file do I change for ..." (a CUDA build, the verdict, the jail,
    the judge's store, a challenge's tests): every file it names must exist, so a move that
    forgets the page fails here."""
    named = where_to_change((REPO / "docs" / "architecture.md").read_text())
    for answer in ("runner/grader/verdict.py", "runner/sandbox/jail.py",
                   "runner/languages/nvcc.py", "runner/judge/server/storage/sql.py",
                   "runner/cases.py"):
        assert answer in named, f"docs/architecture.md no longer says where {answer} is"
    missing = [path for path in named if not (REPO / path).exists()]
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
    assert where_to_change("## Where to change what\n| x | `runner/gone.py` |\n## Next\n") \
        == ["runner/gone.py"]
