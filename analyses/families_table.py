"""The README's families table, printed from the test results: one row per sites-table family, one column per step.

Nothing in the table is kept by hand. The script runs pytest on the modules that test the families end to end
(``--junitxml``), or reads a junit file a run already wrote (``--from-junit``), and maps every test case to a
``(family, step)`` cell from its test id alone:

* **family** — the model_type a parametrized id carries (``test_sweep_with_the_default_engine[qwen2_vl]``,
  ``test_zero_ablation_equals_weight_surgery[nnsight-head0-gemma3]``: one of the ``-``-separated parts), else a
  model_type named in the function name (``test_mllama_…``, ``test_paligemma_…``). Browser tests whose id names no
  family drive the app on its default model, :data:`workbench.organism.DEFAULT_MODEL` (its model_type is read
  from its ``config.json``). A test that names no family (``test_unsupported_architecture_…``) is listed under
  the table as not tied to one family, never dropped silently.
* **step** — from the module and the function name, by the ordered rules of :data:`RULES` (first match wins): a
  ``transformer_lens`` test is the TransformerLens step wherever it lives, every test of ``test_packed.py`` is
  "packed = naive", every browser test is "browser", ``apply_scales`` / ``generate`` before ``train`` before
  ``sweep`` … in ``test_families.py``, and the rest of ``test_oracles.py`` is "oracles". New tests are picked up
  by their names; a test of ``test_families.py`` no rule matches is listed under the table too.

A cell is ``pass (n)`` (n test cases passed), ``FAIL (k of n)``, ``skipped: <reason>`` (pytest's skip message),
``refused: <reason>`` where the passing tests of the cell assert a refusal (their name says ``refuse`` /
``refusal``), ``not run (pass --browser)`` for browser tests collected but not run, or ``not tested`` where no test
covers the cell. A refusal's reason is never written here: for the packed path it is the error
:func:`workbench.sweeps.packed.check_packable` raises for the family's row (``SiteRow.unpackable``); for
TransformerLens it is the text ``tests/integration/test_oracles.py`` asserts the refusal contains (``TL_REFUSES``).
A sites-table row that serves several model_types (Idefics3 / SmolVLM) sums its model_types' cases and says how
many came from each. Model types transformers 5.24 has no class for (:data:`workbench.models.sites.MISSING`) get a
row of their own saying so.

    .venv/bin/python analyses/families_table.py                       # run the three integration modules (~2.5 min on 2 cores)
    .venv/bin/python analyses/families_table.py --browser             # … and tests/browser/test_app.py (Chromium needed)
    .venv/bin/python analyses/families_table.py --from-junit run.xml  # reuse a run's junit file
    .venv/bin/python analyses/families_table.py --write-readme        # also rewrite the table between the README's markers

It prints the table and writes analyses/results/families_table.md (command, date, versions, the table, the tests not
in it). Exit status: 0, 1 when a test failed, 2 when no test case mapped to any cell (the mapping is broken).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workbench.models.sites import MISSING, SITES  # noqa: E402

MODULES = ("tests/integration/test_families.py", "tests/integration/test_oracles.py", "tests/integration/test_packed.py")
BROWSER_MODULE = "tests/browser/test_app.py"
OUT = ROOT / "analyses" / "results" / "families_table.md"
README = ROOT / "README.md"
START, END = "<!-- families-table:start -->", "<!-- families-table:end -->"

MODEL_INFO, LOAD, BATCH, ORACLES, SWEEP, PACKED, TL, TRAIN, APPLY, BROWSER = STEPS = (
    "model info", "load_vlm", "build_batch", "oracles", "sweep", "packed = naive", "TransformerLens", "scale train",
    "apply_scales + generate", "browser")

#: (module stem or "" for any, regex searched in the function name or "" for any, step); first match wins.
RULES: tuple[tuple[str, str, str], ...] = (
    ("", r"transformer_lens", TL),
    ("test_app", "", BROWSER),
    ("test_packed", "", PACKED),
    ("", r"(^|_)(apply_scales|generate)(_|$)", APPLY),
    ("", r"(^|_)(scale_)?train(_|$)", TRAIN),
    ("test_families", r"(^|_)model_info(_|$)", MODEL_INFO),
    ("test_families", r"(^|_)(load_vlm|torchvision|load_processor)(_|$)", LOAD),
    ("test_families", r"(^|_)build_batch(_|$)", BATCH),
    ("test_families", r"(^|_)oracles?(_|$)", ORACLES),
    ("test_families", r"(^|_)sweep(_|$)", SWEEP),
    ("test_families", r"(^|_)packed(_|$)", PACKED),
    ("test_oracles", "", ORACLES),
)
REFUSAL = re.compile(r"(^|_)(refuses?|refused|refusal)(_|$)")
FAILED, ERROR, SKIPPED, PASSED, NOT_RUN = "failed", "error", "skipped", "passed", "not run"


@dataclass(frozen=True)
class Case:
    """One test case: ``module`` the file stem (``test_families``), ``name`` the function, ``params`` the id's parts."""

    module: str
    name: str
    params: tuple[str, ...]
    status: str  # passed / failed / error / skipped / not run
    message: str = ""

    @property
    def nodeid(self) -> str:
        return f"{self.module}::{self.name}" + (f"[{'-'.join(self.params)}]" if self.params else "")


def split_id(test_name: str) -> tuple[str, tuple[str, ...]]:
    """``"test_x[nnsight-head0-llava]"`` → ``("test_x", ("nnsight", "head0", "llava"))``."""
    m = re.fullmatch(r"([^\[]+)(?:\[(.*)\])?", test_name)
    return m.group(1), tuple(m.group(2).split("-")) if m.group(2) else ()


def module_of(classname: str) -> str:
    """junit ``classname`` ``tests.integration.test_oracles[.TestClass]`` → ``test_oracles``."""
    parts = classname.split(".")
    return next((p for p in parts if p.startswith("test_")), parts[-1])


_RANK = {FAILED: 0, ERROR: 0, SKIPPED: 1, NOT_RUN: 2, PASSED: 3}


def read_junit(path: str | Path) -> list[Case]:
    """The test cases of a pytest junit file; a case reported twice (a teardown error) keeps its worst status."""
    found: dict[tuple[str, str], Case] = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        status, message = PASSED, ""
        for tag, tag_status in (("failure", FAILED), ("error", ERROR), ("skipped", SKIPPED)):
            el = tc.find(tag)
            if el is not None:
                status = tag_status
                message = (el.get("message") or el.text or "").strip()
                break
        module = module_of(tc.get("classname", ""))
        name, params = split_id(tc.get("name", ""))
        case = Case(module, name, params, status, message)
        key = (module, tc.get("name", ""))
        if key not in found or _RANK[status] < _RANK[found[key].status]:
            found[key] = case
    return list(found.values())


def family_keys() -> list[str]:
    """Every model_type the table has a row for, longest first (so ``llava_next`` is found before ``llava``)."""
    return sorted({t for r in SITES for t in r.model_types} | set(MISSING), key=len, reverse=True)


def default_browser_family() -> str | None:
    """The model_type of the app's default model, the one the browser tests' server sweeps."""
    from workbench.organism import DEFAULT_MODEL

    config = Path(DEFAULT_MODEL) / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None


def family_of(case: Case, keys: list[str], browser_default: str | None = None) -> str | None:
    for p in case.params:
        if p in keys:
            return p
    padded = f"_{case.name}_"
    for k in keys:
        if f"_{k}_" in padded:
            return k
    return browser_default if case.module == Path(BROWSER_MODULE).stem else None


def step_of(case: Case) -> str | None:
    for module, pattern, step in RULES:
        if (not module or module == case.module) and (not pattern or re.search(pattern, case.name)):
            return step
    return None


def is_refusal(case: Case) -> bool:
    return bool(REFUSAL.search(case.name))


def refusal_reason(step: str, key: str) -> str:
    """The one-line reason a family is refused at a step, from the code or the test, never from this script."""
    from workbench.errors import WorkbenchError
    from workbench.models.sites import site_row

    if step == PACKED:
        from workbench.sweeps.packed import check_packable

        try:
            check_packable(SimpleNamespace(site=SimpleNamespace(row=site_row(key))))
        except WorkbenchError as e:
            return e.problem
        return f"(the {key} row is now packable, but a refusal test passed)"
    if step == TL:
        from tests.integration.test_oracles import TL_REFUSES

        text = TL_REFUSES.get(key, "")
        if text.startswith("has no adapter"):  # check_adapter's message: "TransformerLens <version> has no adapter for …"
            text = f"TransformerLens {_version('transformer-lens')} {text}"
        return text or f"(no reason for {key} in test_oracles.TL_REFUSES)"
    return "(see the refusal test)"


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _first_line(text: str) -> str:
    text = re.sub(r"^Skipped: ", "", text.strip())
    return text.splitlines()[0] if text else "no reason given"


def render(cases: list[Case], step: str, key: str) -> str:
    """One model_type's cell at one step (see the module docstring for the vocabulary)."""
    if not cases:
        return "not tested"
    bad = [c for c in cases if c.status in (FAILED, ERROR)]
    if bad:
        return f"FAIL ({len(bad)} of {len(cases)})"
    if all(c.status == NOT_RUN for c in cases):
        return "not run (pass --browser)"
    passed = [c for c in cases if c.status == PASSED and not is_refusal(c)]
    refused = [c for c in cases if c.status == PASSED and is_refusal(c)]
    skipped = [c for c in cases if c.status == SKIPPED]
    parts = []
    if passed:
        parts.append(f"pass ({len(passed)})")
    if refused:
        parts.append(("refused" if not passed else f"refused ({len(refused)})") + f": {refusal_reason(step, key)}")
    if skipped:
        reasons = "; ".join(dict.fromkeys(_first_line(c.message) for c in skipped))
        parts.append(("skipped" if not parts else f"skipped ({len(skipped)})") + f": {reasons}")
    return "; ".join(parts)


def render_row(by_type: dict[str, list[Case]], step: str, model_types: tuple[str, ...]) -> str:
    """A sites-table row's cell: its one model_type's, or the model_types' combined (a pass sums, with each one's count)."""
    cells = {t: render(by_type.get(t, []), step, t) for t in model_types}
    if len(model_types) == 1:
        return cells[model_types[0]]
    if all(c.startswith("pass (") and c.endswith(")") and ";" not in c for c in cells.values()):
        counts = {t: int(c[len("pass ("):-1]) for t, c in cells.items()}
        return f"pass ({sum(counts.values())}: " + ", ".join(f"{t} {n}" for t, n in counts.items()) + ")"
    if len(set(cells.values())) == 1:
        return next(iter(cells.values()))
    return "; ".join(f"{t}: {c}" for t, c in cells.items())


@dataclass
class Mapped:
    cells: dict[tuple[str, str], list[Case]]  # (model_type, step) → cases
    loose: list[Case]  # cases tied to no family, or to no step


def map_cases(cases: list[Case], browser_default: str | None = None) -> Mapped:
    keys = family_keys()
    cells: dict[tuple[str, str], list[Case]] = defaultdict(list)
    loose = []
    for c in cases:
        key, step = family_of(c, keys, browser_default), step_of(c)
        if key is None or step is None:
            loose.append(c)
        else:
            cells[(key, step)].append(c)
    return Mapped(dict(cells), loose)


def table(mapped: Mapped) -> str:
    head = ["family", "model_type", "decoder layers at", "head site (o_proj input)", *STEPS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in SITES:
        cells = [render_row({t: mapped.cells.get((t, s), []) for t in row.model_types}, s, row.model_types) for s in STEPS]
        lines.append("| " + " | ".join([row.family, ", ".join(f"`{t}`" for t in row.model_types), f"`{row.layers}`",
                                        f"`{row.attn_out_paths()}`", *map(_md, cells)]) + " |")
    for model_type, (problem, fix) in MISSING.items():
        lines.append("| " + " | ".join(["—", f"`{model_type}`", "—", "—",
                                        _md(f"no transformers 5.24 class: {problem}; {fix}"), *["—"] * (len(STEPS) - 1)]) + " |")
    return "\n".join(lines)


def loose_summary(mapped: Mapped) -> str:
    """The test cases not in the table, one line per function with its status counts."""
    by_fn: dict[str, Counter] = defaultdict(Counter)
    for c in mapped.loose:
        by_fn[f"{c.module}::{c.name}"][c.status] += 1
    return "\n".join(f"- `{fn}`: " + ", ".join(f"{n} {s}" for s, n in sorted(cnt.items())) for fn, cnt in sorted(by_fn.items()))


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def versions() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        commit = (commit + (" + uncommitted changes" if dirty else "")) or "unknown"
    except OSError:
        commit = "unknown"
    dists = ("torch", "transformers", "nnsight", "transformer-lens", "pytest", "torchvision")
    return f"python {platform.python_version()}, " + ", ".join(f"{d} {_version(d)}" for d in dists) + f"; git {commit}"


def run_pytest(modules: list[str], junit: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit2", f"--junitxml={junit}",
           *modules]
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    return rc, time.perf_counter() - t0


def collect(module: str) -> list[Case]:
    """The module's test ids without running them (status "not run")."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", module], cwd=ROOT,
                         capture_output=True, text=True).stdout
    cases = []
    for line in out.splitlines():
        if "::" in line:
            path, _, test = line.strip().partition("::")
            name, params = split_id(test.split("::")[-1])
            cases.append(Case(Path(path).stem, name, params, NOT_RUN))
    return cases


def replace_readme(text: str, block: str) -> str:
    """Put ``block`` between the README's markers (exactly one pair, in order), the rest untouched."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"README.md must hold exactly one {START} … {END} pair")
    before, rest = text.split(START)
    _, after = rest.split(END)
    return f"{before}{START}\n{block}\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-junit", type=Path, help="read this pytest junit file instead of running the tests")
    ap.add_argument("--browser", action="store_true", help=f"also run {BROWSER_MODULE} (otherwise its cells say 'not run')")
    ap.add_argument("--junit", type=Path, help="where to keep the junit file of the run (default: a temporary file)")
    ap.add_argument("--out", type=Path, default=OUT, help="the markdown report (default: analyses/results/families_table.md)")
    ap.add_argument("--write-readme", action="store_true", help="rewrite the table between the README's families-table markers")
    args = ap.parse_args(argv)

    wall = None
    if args.from_junit:
        cases = read_junit(args.from_junit)
        source = f"read from {args.from_junit}"
    else:
        modules = [*MODULES, *([BROWSER_MODULE] if args.browser else [])]
        junit = args.junit or Path(tempfile.mkdtemp(prefix="families-table-")) / "junit.xml"
        _, wall = run_pytest(modules, junit)
        if not junit.is_file():
            print(f"error: pytest wrote no junit file at {junit}", file=sys.stderr)
            return 2
        cases = read_junit(junit)
        source = "pytest " + " ".join(modules)
    if not any(c.module == Path(BROWSER_MODULE).stem for c in cases):
        cases += collect(BROWSER_MODULE)
    mapped = map_cases(cases, default_browser_family())
    if not mapped.cells:
        print("error: no test case mapped to any (family, step) cell: the test ids or RULES changed", file=sys.stderr)
        return 2

    ran = [c for c in cases if c.status != NOT_RUN]
    counts = Counter(c.status for c in ran)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python analyses/families_table.py " + " ".join(argv if argv is not None else sys.argv[1:])
    in_table = sum(c.status != NOT_RUN for cell in mapped.cells.values() for c in cell)
    summary = (f"{len(ran)} test cases ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})"
               + (f" in {wall:.0f} s" if wall is not None else "")
               + f"; {in_table} in the table, {sum(c.status != NOT_RUN for c in mapped.loose)} tied to no one family or step")
    tab = table(mapped)
    legend = ("Cells: `pass (n)` n test cases passed; `FAIL (k of n)`; `refused: …` the passing tests assert that refusal "
              "(the reason is the error's or the test's text); `skipped: …` pytest's reason; `not run (pass --browser)`; "
              "`not tested` no test covers it.")
    block = (f"{tab}\n\n*Printed by `{command.strip()}` on {date} from {summary}; {versions()}. {legend}*")
    report = (f"# Families × steps, from the test results\n\n- command: `{command.strip()}`\n- date: {date}\n"
              f"- tests: {source}; {summary}\n- versions: {versions()}\n\n{tab}\n\n{legend}\n\n"
              f"## Test cases not tied to one family or step (not in the table)\n\n{loose_summary(mapped) or '(none)'}\n")
    print(tab)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"\nwrote {args.out}", file=sys.stderr)
    if args.write_readme:
        README.write_text(replace_readme(README.read_text(), block))
        print(f"rewrote the families table in {README}", file=sys.stderr)
    return 1 if counts[FAILED] or counts[ERROR] else 0


if __name__ == "__main__":
    sys.exit(main())
