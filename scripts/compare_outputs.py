"""Compare the text outputs of the committed notebooks with those of another revision, cell by cell.

    python scripts/compare_outputs.py REV [--json FILE]

A restructuring must not change what a reader sees. For each notebook this matches the cells of the working
tree's ``.ipynb`` with those of ``REV`` by cell id (then by position), and compares their text outputs
(stdout, text/plain, text/markdown) after normalising what differs between any two executions: timings,
memory figures and throughput. It prints, per notebook, how many cells are identical, changed, added or gone,
and the ids of the changed ones with their first differing line.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what legitimately differs between two executions of the same code on the same data
VOLATILE = [
    (re.compile(r"\d[\d,.]*\s*(s|ms|µs|min|minutes|seconds|MB|MiB|GB|GiB|tokens/s|examples/s|step/s|s/step)\b"),
     r"<measured> \1"),
    (re.compile(r"\d+:\d\d(:\d\d)?"), "<clock>"),
    (re.compile(r"0x[0-9a-f]+"), "<address>"),
]


def text_outputs(cell: dict) -> str:
    """A code cell's outputs as a reader sees them, as text."""
    text = ""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":  # a kernel may split one print into several streams
            text += "".join(output["text"])
        for kind in ("text/markdown", "text/plain"):
            if kind in output.get("data", {}):
                text += "".join(output["data"][kind]) + "\n"
                break
    return text


def normalised(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def code_cells(notebook: dict) -> dict[str, str]:
    cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    return {cell.get("id") or f"#{index}": normalised(text_outputs(cell)) for index, cell in enumerate(cells)}


def compare(name: str, revision: str) -> dict:
    now = json.loads((ROOT / "notebooks" / name).read_text())
    shown = subprocess.run(["git", "show", f"{revision}:notebooks/{name}"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode:
        return {"notebook": name, "missing at": revision}
    before, after = code_cells(json.loads(shown.stdout)), code_cells(now)
    changed = {}
    for cell_id in before.keys() & after.keys():
        if before[cell_id] != after[cell_id]:
            old, new = before[cell_id].splitlines(), after[cell_id].splitlines()
            first = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
            changed[cell_id] = {"before": old[first] if first < len(old) else "",
                                "after": new[first] if first < len(new) else ""}
    return {"notebook": name, "identical": len(before.keys() & after.keys()) - len(changed), "changed": changed,
            "added": sorted(after.keys() - before.keys()), "gone": sorted(before.keys() - after.keys())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision")
    parser.add_argument("--json", help="also write the comparison here")
    args = parser.parse_args()
    found = [compare(path.name, args.revision) for path in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    for result in found:
        if "missing at" in result:
            print(f"{result['notebook']}: not in {args.revision}")
            continue
        print(f"{result['notebook']}: {result['identical']} identical, {len(result['changed'])} changed, "
              f"{len(result['added'])} added, {len(result['gone'])} gone")
        for cell_id, lines in result["changed"].items():
            print(f"    {cell_id}: {lines['before'][:70]!r} -> {lines['after'][:70]!r}")
    if args.json:
        Path(args.json).write_text(json.dumps({"revision": args.revision, "notebooks": found}, indent=1) + "\n")


if __name__ == "__main__":
    main()
