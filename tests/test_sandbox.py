"""Each submission is graded in a bubblewrap sandbox: it cannot change the checkout, read or change a peer's
folder or the grades, reach the network, or leave a process behind; a loop that holds the GIL stops at the limit."""

import csv
import subprocess
import uuid

import pytest
from test_grading import IMPORT, NOTEBOOK, submission

from bitfit_edu.classroom import grading
from bitfit_edu.data.locations import repo_root
from bitfit_edu.errors import BitFitError

pytestmark = pytest.mark.skipif(grading.BWRAP is None, reason="no bubblewrap here (apt-get install bubblewrap)")
MARK = uuid.uuid4().hex


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    checkout_file = repo_root() / "bitfit_edu" / "classroom" / "exercises.py"
    before = checkout_file.read_bytes()
    submission(root / "anna", NOTEBOOK, [IMPORT, 'exercises.check("01.b_k", "b")'])
    attack = (f"import os, socket, subprocess\n"
              f"found = {{}}\n"
              f"for name, path in (('checkout', {str(checkout_file)!r}), ('peer', {str(root / 'anna' / 'x')!r}),\n"
              f"                   ('grades', {str(root / 'grades.csv')!r})):\n"
              f"    try:\n"
              f"        open(path, 'a').write('# {MARK}')\n"
              f"        found[name] = 'written'\n"
              f"    except OSError:\n"
              f"        found[name] = 'refused'\n"
              f"found['peers seen'] = os.listdir({str(root)!r})\n"
              f"try:\n"
              f"    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
              f"    found['network'] = 'reached'\n"
              f"except OSError:\n"
              f"    found['network'] = 'refused'\n"
              f"subprocess.Popen(['sleep', '{MARK[:6]}1'], start_new_session=True)\n"
              f"exercises.check('01.b_k', str(found))")
    submission(root / "bert", NOTEBOOK, [IMPORT, attack])
    key_file = grading.withheld()[0]
    seeker = (f"import os\n"
              f"found = {{}}\n"
              f"try:\n"
              f"    found['answer'] = exercises.EXERCISES['01.b_k'].answer()\n"
              f"except Exception as error:\n"
              f"    found['answer'] = type(error).__name__\n"
              f"exercises.answer('01.b_k')\n"
              f"found['key file'] = len(open({str(key_file)!r}).read())\n"
              f"listed = lambda folder: os.listdir(folder) if os.path.isdir(folder) else []\n"
              f"found['compiled'] = listed({str(key_file.parent / '__pycache__')!r})\n"
              f"found['history'] = listed({str(repo_root() / '.git')!r})\n"
              f"found['outputs'] = 'softmax(s + c)' in open('{NOTEBOOK}').read()\n"
              f"exercises.check('01.b_k', str(found))")
    submission(root / "dana", NOTEBOOK, [IMPORT, seeker])
    filler = ("import os\n"
              "found, block = {}, b'x' * 2**24\n"
              "try:\n"
              "    with open('/tmp/fill', 'wb') as handle:\n"
              "        for _ in range(64):  # 1 GiB, twice what the sandbox's /tmp holds\n"
              "            handle.write(block)\n"
              "except OSError as error:\n"
              "    found['tmp'] = f'refused after {os.path.getsize(\"/tmp/fill\") // 2**20} MiB'\n"
              "exercises.check('01.bert_large_layer', str(found))")
    scratch_filler = ("import os\n"
                      "folder, block = os.environ['IPYTHONDIR'], b'x' * 2**24\n"
                      "for number in range(10**6):\n"
                      "    with open(os.path.join(folder, f'fill{number % 1000}'), 'wb') as handle:\n"
                      "        for _ in range(8):\n"
                      "            handle.write(block)")
    submission(root / "fern", NOTEBOOK, [IMPORT, "print('x' * 100_000_000)", 'exercises.check("01.b_k", "b")',
                                         filler, scratch_filler, 'exercises.check("01.layer_biases", 8448)'])
    submission(root / "cleo", NOTEBOOK, [IMPORT, 'exercises.check("01.b_k", "b")',
                                         "import re\nre.match('(a+)+$', 'a' * 40 + 'b')",
                                         'exercises.check("01.layer_biases", 8448)'])
    rows = grading.grade(root, root / "grades.csv", timeout=45)
    return root, rows, checkout_file, before


def test_nothing_outside_a_submission_changes_and_nothing_is_reached(hostile_class):
    root, rows, checkout_file, before = hostile_class
    assert checkout_file.read_bytes() == before
    assert not (root / "anna" / "x").exists()
    report = next(row for row in rows if row.student == "bert" and row.exercise == "01.b_k").why
    assert "'checkout': 'refused'" in report and "'peer': 'refused'" in report and "'grades': 'refused'" in report
    assert "'peers seen': []" in report and "'network': 'refused'" in report
    graded = {(row["student"], row["exercise"]): row["result"] for row in csv.DictReader((root / "grades.csv").open())}
    assert graded[("anna", "01.b_k")] == "right" and MARK not in (root / "grades.csv").read_text()


def test_no_copy_of_the_answers_is_within_reach_of_a_submission(hostile_class):
    _, rows, _, _ = hostile_class
    report = next(row for row in rows if row.student == "dana" and row.exercise == "01.b_k")
    assert report.result == "wrong"
    assert "'answer': 'BitFitError'" in report.why and "'key file': 0" in report.why
    assert "'compiled': []" in report.why and "'history': []" in report.why and "'outputs': False" in report.why


def test_a_flood_of_output_is_graded_and_a_full_disk_is_stopped(hostile_class):
    _, rows, _, _ = hostile_class
    found = {row.exercise: row for row in rows if row.student == "fern"}
    assert found["01.b_k"].result == "right"
    assert "'tmp': 'refused after" in found["01.bert_large_layer"].why
    assert found["01.layer_biases"].result == "not graded"
    assert f"wrote more than {grading.DISK_LIMIT // 2**20} MiB" in found["01.layer_biases"].why


def test_no_process_outlives_its_grading(hostile_class):
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"sleep {MARK[:6]}1" not in running


def test_a_loop_holding_the_gil_stops_at_the_limit_and_what_ran_before_is_graded(hostile_class):
    _, rows, _, _ = hostile_class
    found = {row.exercise: row for row in rows if row.student == "cleo"}
    assert found["01.b_k"].result == "right"
    assert found["01.layer_biases"].result == "not graded" and "time limit of 45 s" in found["01.layer_biases"].why


def test_without_bubblewrap_grading_refuses_unless_unsafe(tmp_path, monkeypatch):
    (tmp_path / "anna").mkdir()
    monkeypatch.setattr(grading, "BWRAP", None)
    with pytest.raises(BitFitError, match="apt-get install bubblewrap.*--unsafe"):
        grading.grade(tmp_path, tmp_path / "grades.csv")
