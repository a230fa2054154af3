"""The site's measured parts, written as Markdown into ``site/_generated/`` before Sphinx reads the pages.

Nothing here is typed: the course map and the instructor guide come from ``bitfit_edu.classroom.course``
(each notebook's time from its committed, executed copy; each grid's cost from its records), the verdicts
from the outputs of the committed notebooks' cells tagged ``verdicts``, and every figure's alt text from
``results/figures/<name>.alt.txt``, which the notebooks wrote when they drew the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import tomllib

from bitfit_edu.classroom import course, exercises, offline, plans, readability, slides
from bitfit_edu.console import quiet_outputs
from bitfit_edu.data.locations import results_folder
from bitfit_edu.deploy import loadtest
from bitfit_edu.deploy.memory import DEFAULT_MEMORY_RELEASE
from bitfit_edu.evidence import plots

SITE = Path(__file__).resolve().parent
GENERATED = SITE / "_generated"
EXTRA = GENERATED / "extra"  # copied as they are to the site's root (``html_extra_path``): the slides, the scripts
VENDOR = "vendor"  # the site's own copies of the scripts its pages and slides run on (``offline``)
REPOSITORY = tomllib.loads((SITE.parent / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
SLUG = REPOSITORY.removeprefix("https://github.com/")


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def course_map() -> str:
    """The home page's tables: each notebook, what it teaches, its reading and running time, where to open it;
    then how each notebook's prose measures against the course's writing targets (``readability``)."""
    rows = ["| notebook | what it teaches | reading (200 words a minute) | running (last execution, 2 cores) "
            "| open it |",
            "|---|---|---|---|---|"]
    targets = ["| notebook | words | sentences over 35 words | longest block (words) | provenance | objectives "
               "| takeaways |", "|---|---|---|---|---|---|---|"]
    for chapter in course.CHAPTERS:
        colab = f"https://colab.research.google.com/github/{SLUG}/blob/main/notebooks/{chapter.stem}.ipynb"
        binder = f"https://mybinder.org/v2/gh/{SLUG}/main?urlpath=lab/tree/notebooks/{chapter.stem}.ipynb"
        prose = readability.measure(chapter.notebook)
        rows.append(f"| {{doc}}`{chapter.number}: {chapter.title} </notebooks/{chapter.stem}>` | {chapter.teaches} | "
                    f"{prose.reading_minutes:.0f} min | {_minutes(course.measured_seconds(chapter.notebook))} | "
                    f"[Colab]({colab}), [Binder]({binder}) |")
        met = {name.split(" ")[0]: "met" if ok else "not yet" for name, ok in prose.targets_met.items()}
        targets.append(f"| {chapter.number} | {prose.words:,} | {prose.long_share:.0%} ({met['sentences']}) | "
                       f"{prose.longest_cell} ({met['no']}) | {prose.provenance_share:.0%} ({met['provenance']}) | "
                       f"{met['objectives']} | {met['takeaways']} |")
    targets_note = (f"\n\nHow each notebook's prose measures against the course's writing targets: at most "
                    f"{readability.LONG_SHARE:.0%} of the main flow's sentences over "
                    f"{readability.LONG_SENTENCE} words, "
                    f"no block (a cell, or its part under one heading) over {readability.LONG_CELL} words, at most "
                    f"{readability.PROVENANCE_SHARE:.0%} of its sentences about how the evidence was made, learning "
                    "objectives at the start and takeaways at the end (`bitfit_edu.classroom.readability` says how "
                    "it counts).\n\n")
    counts = exercises.exercise_counts()
    exercise_note = (f"\n\nThe exercises: {counts['all']} in all, {counts['code']} of them asking for code and "
                     f"{counts['transfer']} transfer questions (another model, task or scale, or a prediction "
                     "before the result). Targets: "
                     + "; ".join(f"{name}: {'met' if ok else 'not yet'}"
                                 for name, ok in exercises.exercise_targets().items()) + ".\n")
    return "\n".join(rows) + targets_note + "\n".join(targets) + exercise_note


def _mistakes(chapter: course.Chapter) -> str:
    lines = []
    for key, exercise in chapter.exercises().items():
        if exercise.function is not None:
            tried = "; ".join(case.about for case in exercise.function.cases)
            lines.append(f"- `{key}`: *{exercise.question}* A function, `{exercise.function.signature}`, tried on: "
                         f"{tried}. The reasoning: {exercise.why()}")
            continue
        expected = exercise.answer()
        if exercise.choices:
            wrong = "; ".join(f"({letter}) {text}" for letter, text in exercise.choices.items() if letter != expected)
            lines.append(f"- `{key}`: *{exercise.question}* The wrong choices: {wrong}. The reasoning: "
                         f"{exercise.why()}")
        else:
            lines.append(f"- `{key}`: *{exercise.question}* A number, right within {exercise.tolerance:.0%}. The "
                         f"reasoning: {exercise.why()}")
    return "\n".join(lines) or "- (no exercises)"


def _regeneration(chapter: course.Chapter) -> str:
    if not (chapter.experiments or chapter.records):
        return "Nothing to regenerate: everything it shows is computed live."
    cost = course.regeneration_cost(chapter)
    if chapter.records == "deployment":
        how = ("python -m bitfit_edu grid --experiment deployment --results results/deployment "
               "--deltas results/deployment/classroom/deltas")
    elif chapter.records:
        how = "# set RETRAIN = True in the notebook's parameter cell, then run it"
    else:
        how = "\n".join(f"python -m bitfit_edu grid --experiment {name}" for name in chapter.experiments)
    if "expose" in chapter.experiments:  # notebook 09 also reads measurements that are not runs
        how += "\n" + "\n".join(f"python -m bitfit_edu measure {what}" for what in ("probes", "cka", "vision"))
    spent = f"{cost['cpu_core_hours']:.1f} CPU core-hours"
    if cost["gpu_hours"]:
        spent += f" and {cost['gpu_hours']:.1f} GPU process-hours"
    return (f"\n\n```bash\n{how}\n```\n\nThe committed classroom records behind it: {cost['runs']} runs, {spent}, "
            f"as measured by the records themselves (devices: {cost['devices'] or 'not recorded'}). A 2-core machine "
            "supplies two core-hours per hour with two 1-thread workers (`--worker 1/2`, `--worker 2/2`).")


def instructor_chapters() -> str:
    """One section per notebook: objectives, prerequisites, time, what runs live, questions, mistakes, cost."""
    sections = []
    for chapter in course.CHAPTERS:
        objectives = "\n".join(f"- {objective}" for objective in chapter.objectives)
        questions = "\n".join(f"{index}. {question}\n\n   *A model answer:* {answer}\n" for index, (question, answer)
                              in enumerate(zip(chapter.questions, chapter.answers, strict=True), 1))
        sections.append(
            f"## {chapter.number}: {chapter.title}\n\n"
            f"{{doc}}`Open the notebook </notebooks/{chapter.stem}>`. It teaches {chapter.teaches}.\n\n"
            f"**Learning objectives.** Students can:\n\n{objectives}\n\n"
            f"**Prerequisites.** {chapter.prerequisites[0].upper() + chapter.prerequisites[1:]}.\n\n"
            f"**Time.** {_minutes(course.measured_seconds(chapter.notebook))} to run top to bottom on 2 cores "
            "(its last execution).\n\n"
            f'**Slides.** <a href="slides/{chapter.stem}.slides.html">{chapter.number}: {chapter.title}</a> '
            "(reveal.js; the arrow keys move, S opens the speaker view).\n\n"
            f"**Live in class:** {chapter.live}. **Read from committed results:** {chapter.committed}.\n\n"
            f"**Discussion questions.** Each with a model answer, for the teacher.\n\n{questions}\n\n"
            f"**Mistakes the exercises catch.**\n\n{_mistakes(chapter)}\n\n"
            f"**Regenerating its committed results.** {_regeneration(chapter)}\n")
    return "\n".join(sections)


def lesson_plans() -> str:
    """Every lesson plan with its measured minutes (``plans.PLANS``)."""
    return "\n".join(plan.markdown() for plan in plans.PLANS)


def verdicts() -> str:
    """The outputs of every committed notebook cell tagged ``verdicts``, under the notebook's title and the
    section the cell sits in: its Markdown verdict lines where it displays them, else what it printed."""
    parts = []
    for chapter in course.CHAPTERS:
        section = ""
        for cell in json.loads(chapter.notebook.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "markdown":
                headings = [line.lstrip("#").strip() for line in source.splitlines() if line.startswith("#")]
                section = headings[-1] if headings else section
                continue
            if "verdicts" not in cell.get("metadata", {}).get("tags", []):
                continue
            outputs = cell.get("outputs", [])
            markdown = ["".join(o["data"]["text/markdown"]) for o in outputs if "text/markdown" in o.get("data", {})]
            printed = ["".join(o["text"]) for o in outputs if o.get("name") == "stdout"]
            body = "\n".join(markdown) if markdown else "```text\n" + "".join(printed).rstrip() + "\n```"
            parts.append(f"### Notebook {chapter.number}, {section}\n\n{body}\n")
    return "\n".join(parts)


def figures() -> str:
    """Every figure with alt text in ``results/figures/``, under its name in words (a short heading, so that the
    page's table of contents stays short) with its own title beneath (``<name>.title.txt``)."""
    blocks = []
    for name, alt in plots.alt_texts().items():
        path = results_folder("figures") / f"{name}.png"
        titled = path.with_name(f"{name}{plots.TITLE_SUFFIX}")
        own = f"*{titled.read_text().strip()}*\n\n" if titled.is_file() else ""
        if path.is_file():
            blocks.append(f"### {name.replace('_', ' ').capitalize()}\n\n{own}```{{image}} ../results/figures/"
                          f"{name}.png\n:alt: {alt}\n```\n")
    return "\n".join(blocks)


BENCHMARKS = {"deployment.json": "training, padding and serving (`benchmarks/deployment.py`)",
              "multitask.json": "mixed batches up to 1,024 tasks, beside LoRA (`benchmarks/multitask.py`)",
              "load_test.json": "the service under load (`benchmarks/load_test.py`)",
              "precision.json": "a bf16 or int8 backbone: dev scores and memory (`benchmarks/precision.py`)",
              "load_test_precision.json": "the service under load on each backbone format "
                                          "(`benchmarks/load_test.py --precisions`)"}


def deployment_targets() -> str:
    """One table of every deployment benchmark's targets: measured, target, met, and the machine. The load
    test's come from its repeated runs under serve's default where there are some (``load_test_repeats.json``)."""
    rows = ["| benchmark | measure | ours | target | | measured on |", "|---|---|---|---|---|---|"]
    for file, about in BENCHMARKS.items():
        path = results_folder("benchmarks", file)
        repeats = path.with_name(path.stem + "_repeats.json")
        if repeats.is_file():
            rows += _repeated_targets(about, json.loads(repeats.read_text()))
            continue
        if not path.is_file():
            rows.append(f"| {about} | not measured yet | | | | |")
            continue
        found = json.loads(path.read_text())
        machine = f"{_machine(found)}, {found['measured_at'][:10]}"
        for name, target in found["targets"].items():
            rows.append(f"| {about} | {name} | {target['measured']:.4g} | {target['target']} | "
                        f"{'met' if target['met'] else 'missed'} | {machine} |")
    return "\n".join(rows) + "\n"


def _repeated_targets(about: str, found: dict) -> list[str]:
    """The rows of repeated runs under serve's default: median [smallest, largest], and the runs that met."""
    machine = f"{_machine(found)}, {found['measured_at'][:10]}"
    setting = f"`--memory-release {DEFAULT_MEMORY_RELEASE}`"
    return [f"| {about}, {setting}, {t['runs']} runs | {name}: median [smallest, largest] | {_spread(name, t)} | "
            f"{t['target']} | met in {t['met_in']} of {t['runs']} | {machine} |"
            for name, t in found["summary"][DEFAULT_MEMORY_RELEASE].items()]


def memory_release() -> str:
    """The load test under each ``serve --memory-release`` measured (``load_test*.json``): speed against memory,
    one row per run, then each setting's median and range where runs were repeated (``load_test_repeats.json``)."""
    rows = ["| `--memory-release` | HTTP server, load client | mixed fp32, concurrency 32 (req/s) | "
            "one at a time (req/s) | ratio | RSS growth over the soak (its requests) | measured on |",
            "|---|---|---|---|---|---|---|"]
    for path in sorted(results_folder("benchmarks").glob("load_test*.json")):
        found = json.loads(path.read_text())
        for run in found.get("runs", [found]):
            at = {(row["service"], row["concurrency"]): row["requests_per_second"] for row in run["loads"]}
            mixed, alone = at[("mixed batches", 32)], at[("one at a time, task switch", 32)]
            machine = f"{_machine(found)}, {run['measured_at'][:16]}"
            client = "aiohttp" if "client CPU ms per request" in run["loads"][0] else "httpx"
            soak = f"{run['soak']['growth']:+.1%} ({run['soak']['requests']:,})"
            rows.append(f"| {loadtest.setting(run)} | {found.get('http', 'asyncio + h11')}, {client} | {mixed:.0f} | "
                        f"{alone:.0f} | {mixed / alone:.2f} | {soak} | {machine} |")
    return "\n".join(rows) + "\n" + repeated_runs()


def _machine(found: dict) -> str:
    """The machine a benchmark ran on: its vector instructions, its CPU's name, family and model where recorded
    (one name spans generations of different bf16 speed), and its threads."""
    cpu = f" {found['cpu']}" if "cpu" in found else ""
    return f"{found.get('device', '?')}{cpu}, {_threads(found)}"


def _threads(found: dict) -> str:
    """The threads a benchmark ran with: torch's, or where each backbone format had its own, the model's per
    format (workers x threads each, every layout the runs measured)."""
    if "torch_threads" in found:
        return f"{found['torch_threads']} threads"
    loads = [row for run in found.get("runs", [found]) for row in run["loads"]]
    per_format: dict[str, dict[str, None]] = {}  # the layouts of each format, in the order met
    for row in loads:
        if row["service"].startswith("mixed"):
            per_format.setdefault(row["precision"], {})[f"{row.get('model workers', 1)}x{row['model threads']}"] = None
    return "model workers x threads " + ", ".join(f"{precision} {' or '.join(layouts)}"
                                                  for precision, layouts in per_format.items())


def _spread(name: str, t: dict) -> str:
    """One load-test target over repeated runs: "median [smallest, largest]"."""
    shown = ("{:+.1%}" if name.startswith(loadtest.GROWTH) else
             "{:.0f}" if name.startswith(loadtest.ERRORS) else "{:.2f}").format
    return f"{shown(t['median'])} [{shown(t['min'])}, {shown(t['max'])}]"


def repeated_runs() -> str:
    """Each setting's targets over its repeated runs: median [smallest, largest], and how often met."""
    path = results_folder("benchmarks", "load_test_repeats.json")
    if not path.is_file():
        return ""
    found = json.loads(path.read_text())
    first = next(iter(found["summary"].values()))
    rows = [f"\nRepeated, interleaved, on one machine ({_machine(found)}, "
            f"{found['measured_at'][:10]}): median [smallest, largest], and the runs that met the target.\n",
            "| `--memory-release` | " + " | ".join(f"{name} ({t['target']})" for name, t in first.items()) + " |",
            "|---|" + "---|" * len(first)]
    for setting, targets in found["summary"].items():
        rows.append(f"| {setting} | " + " | ".join(f"{_spread(name, t)}, met in {t['met_in']} of {t['runs']}"
                                                   for name, t in targets.items()) + " |")
    return "\n".join(rows) + "\n"


def grading_time() -> str:
    """How long grading an honest class took, from ``benchmarks/grading.py``'s record."""
    path = results_folder("benchmarks", "grading.json")
    if not path.is_file():
        return "*Grading has not been timed on this copy: run `python benchmarks/grading.py`.*\n"
    found = json.loads(path.read_text())
    machine = found["machine"]
    checked = ("every row as the students answered" if not found["rows not as answered"] else
               f"{len(found['rows not as answered'])} rows not as the students answered")
    return (f"**How long it takes.** Grading {found['students']} honest submissions of notebook 01, one after "
            f"another in the sandbox, took {found['wall seconds'] / 60:.1f} minutes on {machine['cores']} cores "
            f"({machine['hardware']}), {found['seconds per notebook']:.0f} s a notebook, with {checked} "
            f"({found['rows']} rows; `benchmarks/grading.py`, {found['when'][:10]}). A notebook that trains takes "
            "longer: give `--timeout` room for the slowest honest one.\n")


def write_all() -> bool:
    """Write every generated page part into ``site/_generated/``; True when the site serves its own scripts
    (MathJax, the widgets', the slides'), from ``_generated/extra/vendor`` (``offline.fetch``)."""
    quiet_outputs()
    GENERATED.mkdir(exist_ok=True)
    serves_its_own = offline.fetch(EXTRA / VENDOR)
    slides.write_decks(EXTRA / "slides", EXTRA / VENDOR)
    for name, text in {"course_map": course_map(), "instructor_chapters": instructor_chapters(),
                       "lesson_plans": lesson_plans(),
                       "verdicts": verdicts(), "figures": figures(),
                       "deployment_targets": deployment_targets(), "memory_release": memory_release(),
                       "grading_time": grading_time()}.items():
        (GENERATED / f"{name}.md").write_text(text)
    return serves_its_own
