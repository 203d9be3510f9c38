"""``job_from_hash`` builds the job ``Job.fromJSON`` builds, field for field, and reads the
same stored fields; the worker's shortcut around ``nextJobFromJobData`` takes the same steps.
When a new bullmq reads another field or takes another step, these fail by name."""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import pytest
from bullmq import Job, Worker
from hypothesis import given
from hypothesis import strategies as st

from bullmq_proxy import jobs
from bullmq_proxy.jobs import _loads, job_from_hash


class FakeQueue:
    """What ``Job`` reads of its queue."""

    backend = object()
    qualifiedName = "bull:mail"


QUEUE = FakeQueue()

BASE = {"name": "send", "data": '{"to":"a@b.c"}', "opts": '{"attempts":3,"delay":0}',
        "timestamp": "1764680000000", "delay": "0", "priority": "0"}

RAWS = [
    {},
    BASE,
    {**BASE, "progress": '{"step":2}', "processedOn": "1764680000100", "ats": "2",
     "atm": "1", "stc": "1", "failedReason": "boom", "stacktrace": '["at x","at y"]'},
    {**BASE, "finishedOn": "1764680000200", "returnvalue": '{"ok":true}',
     "attemptsMade": "3"},
    {**BASE, "returnvalue": "not json", "progress": "42", "stacktrace": "[]"},
    {**BASE, "opts": '{"backoff":1000,"kl":5,"de":{"id":"d1"},"fpof":true,'
                     '"parent":{"id":"p1","queue":"bull:flows"},"removeOnComplete":10}',
     "parentKey": "bull:flows:p1", "parent": '{"id":"p1","queueKey":"bull:flows"}'},
    {**BASE, "rjk": "every-minute", "defa": "failed by parent"},
    {**BASE, "data": '{"big": 123456789012345678901234567890, "f": 1.5e300, "neg": -0}'},
    {**BASE, "data": '{"n": NaN, "i": Infinity, "huge": 1e400}'},
    {**BASE, "data": '{"s": "\\ud800 lone"}'},
    {**BASE, "data": "[" * 500 + "]" * 500},
    {**BASE, "data": '{"a": 1, "a": 2}', "opts": ' { "attempts" : 2 } '},
]


def fields(job: Job) -> str:
    # repr tells NaN, -0.0 and an int from a float apart, as == would not.
    return repr(sorted(vars(job).items(), key=lambda item: item[0]))


@pytest.mark.parametrize("raw", RAWS)
def test_the_same_job_as_bullmq_builds(raw: dict[str, str]) -> None:
    assert fields(job_from_hash(QUEUE, raw, "7")) == fields(Job.fromJSON(QUEUE, raw, "7"))


@pytest.mark.parametrize(("data", "error"), [("{oops", json.JSONDecodeError),
                                             ("[" * 1100 + "]" * 1100, RecursionError)])
def test_stored_json_bullmq_cannot_read_fails_the_same_way(data: str, error: type) -> None:
    raw = {**BASE, "data": data}
    with pytest.raises(error):
        Job.fromJSON(QUEUE, raw, "7")
    with pytest.raises(error):
        job_from_hash(QUEUE, raw, "7")


def _keys_read(source: str, name: str) -> set[str]:
    return set(re.findall(rf'{name}(?:\.get\(|\[)"(\w+)"', source))


def test_reads_the_fields_bullmq_reads() -> None:
    theirs = _keys_read(inspect.getsource(Job.fromJSON), "rawData")
    ours = _keys_read(inspect.getsource(jobs.job_from_hash), "raw")
    assert len(theirs) >= 15
    assert ours == theirs


def test_the_steps_of_next_job_from_job_data_the_worker_takes_itself() -> None:
    """fetch_next's ``_taken`` mirrors these for a job that is not a scheduler's."""
    source = inspect.getsource(Worker.nextJobFromJobData)
    for step in ("self.limitUntil = max(limit_until, 0) or 0",
                 "self.blockUntil = max(int(delay_until), 0) or 0",
                 "self.drained = False",
                 "Job.fromJSON(self, job_data, job_id)",
                 "job_instance.token = token",
                 "if job_instance.repeatJobKey:"):
        assert step in source, step
    # Nothing else is done with a job that is not a scheduler's.
    assert source.count("job_instance.") == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_loads_reads_what_json_reads(value: Any) -> None:
    text = json.dumps(value)
    assert repr(_loads(text)) == repr(json.loads(text))
    assert repr(_loads(text.encode())) == repr(json.loads(text.encode()))
