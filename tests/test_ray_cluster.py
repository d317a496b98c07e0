"""Indexing on a Ray cluster of several nodes: the pieces spread over the nodes, a node lost
in the middle of a run, every node lost, and nodes that advertise GPUs they do not have.

The nodes are separate raylets on this machine (``ray.cluster_utils.Cluster``), each with
its own resources: a head with no CPU (the driver's node: no worker runs there) and two
nodes of one CPU each, ``node_a`` and ``node_b`` (custom resources that name them), so that
two workers of one CPU each can only run one on each node. A node is removed by killing its
raylet and every process on it, as when a machine goes down. The module starts the cluster
once; a test that removes or adds nodes leaves the cluster as it found it.

The test embedder (``SpanEmbedder`` of ``test_ray``) is extended here: every worker notes
its node and its device, and every piece it embeds, in files under a folder of the test's
(the workers' own record, against which the driver's report is checked); a worker's first
piece waits until every worker has started its first one (so that each node surely gets
pieces, whenever the driver learns that a worker is up); a worker can be told to
hold a piece forever once it has embedded a given number (so that it is surely busy when its
node is removed).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from audiomoment.cli import main
from audiomoment.errors import InputError
from audiomoment.index.distributed import ClapFactory, index_audio_ray
from audiomoment.index.store import ArchiveIndex

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from index_helpers import write_wav  # noqa: E402
from test_ray import (  # noqa: E402
    SpanEmbedder,
    archive_and_its_index,
    assert_same_index,
    index_state,
)

#: Ray's setting (read from the environment, lower case as Ray spells it): the largest
#: result sent along with a call's reply; larger ones wait in the object store of the node.
INLINE_LIMIT = "RAY_" + "max_direct_call_object_size"
#: Windows of the six readable files of ``write_archive`` (1-s windows, whole ones).
WINDOWS = {"r0.wav": 7, "r1.wav": 2, "r2.wav": 5, "r3.wav": 1, "r4.wav": 4, "r5.wav": 6}

# ------------------------------------------------------------------ the embedder


class NodeEmbedder(SpanEmbedder):
    """:class:`SpanEmbedder` that keeps a record of where it runs, in ``log``:

    ``up-<pid>``: the node id, the device it was given, the GPUs Ray gave it and
    $CUDA_VISIBLE_DEVICES, one per line; ``started-<pid>``: written when its first piece
    starts; ``pieces-<pid>``: a line "node path first" per piece it returned. The first
    piece waits until ``wait_for`` workers have started theirs (60 s at most). On the nodes
    ``hold_nodes``, the piece after the first ``hold_after`` ones writes ``held-<pid>`` and
    never returns.
    """

    def __init__(self, log: Path, device: str, wait_for: int, delay_s: float,
                 hold_nodes: tuple[str, ...], hold_after: int) -> None:
        super().__init__(delay_s=delay_s)
        import ray

        self.log, self.wait_for = log, wait_for
        self.node = ray.get_runtime_context().get_node_id()
        self.hold = self.node in hold_nodes
        self.hold_after = hold_after
        self.done = 0
        self.started = False
        gpus = ",".join(str(g) for g in ray.get_gpu_ids())
        up = f"{self.node}\n{device}\n{gpus}\n{os.environ.get('CUDA_VISIBLE_DEVICES', '-')}\n"
        (log / f"up-{os.getpid()}").write_text(up)

    def embed_windows(self, path: Path, first: int, stop: int | None) -> NDArray[np.float32]:
        if not self.started:
            self.started = True
            (self.log / f"started-{os.getpid()}").write_text(f"{path} {first}\n")
            deadline = time.monotonic() + 60
            while (len(list(self.log.glob("started-*"))) < self.wait_for
                   and time.monotonic() < deadline):
                time.sleep(0.05)
        if self.hold and self.done >= self.hold_after:
            (self.log / f"held-{os.getpid()}").write_text(f"{path} {first}\n")
            while True:  # busy with this piece until the node goes
                time.sleep(1)
        rows = super().embed_windows(path, first, stop)
        self.done += 1
        with open(self.log / f"pieces-{os.getpid()}", "a") as out:
            out.write(f"{self.node} {Path(path).name} {first}\n")
        return rows


def node_embedder(device: str, log: Path, wait_for: int = 2, delay_s: float = 0.1,
                  hold_nodes: tuple[str, ...] = (), hold_after: int = 0) -> NodeEmbedder:
    """An ``embedder_factory`` of :class:`NodeEmbedder`."""
    return NodeEmbedder(log, device, wait_for, delay_s, hold_nodes, hold_after)


def pieces_by_node(log: Path) -> Counter[str]:
    """Pieces per node id, as the workers wrote them down."""
    return Counter(line.split()[0] for f in log.glob("pieces-*")
                   for line in f.read_text().splitlines())


def workers_up(log: Path) -> list[list[str]]:
    """Per worker started: [node id, device, Ray's GPU ids, $CUDA_VISIBLE_DEVICES]."""
    return sorted(f.read_text().splitlines() for f in log.glob("up-*"))


# ------------------------------------------------------------------ the cluster


class Nodes:
    """The module's cluster: a head without CPUs and two one-CPU nodes named by a custom
    resource; nodes can be removed, added back, and a fake-GPU node added."""

    WORKER_NODES = ("node_a", "node_b")

    def __init__(self) -> None:
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "resources": {"head": 1}, "include_dashboard": False})
        self.handles: dict[str, Any] = {}
        self.restore()

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add(self, name: str, **kwargs: Any) -> None:
        self.handles[name] = self.cluster.add_node(num_cpus=1, resources={name: 1}, **kwargs)

    def remove(self, name: str) -> None:
        self.cluster.remove_node(self.handles.pop(name))

    def restore(self) -> None:
        """Back to the head and the two one-CPU nodes."""
        for name in list(self.handles):
            if name not in self.WORKER_NODES:
                self.remove(name)
        for name in self.WORKER_NODES:
            if name not in self.handles:
                self.add(name)
        self.cluster.wait_for_nodes()

    def ids(self) -> dict[str, str]:
        """The node id of every named node alive, by name (from Ray's own node table)."""
        import ray

        out = {}
        for node in ray.nodes():
            names = [n for n in node["Resources"] if n in self.handles or n == "head"]
            if node["Alive"] and names:
                out[names[0]] = node["NodeID"]
        return out


@pytest.fixture(scope="module")
def ray_nodes() -> Iterator[Nodes]:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install "
                                            "'audiomoment[ray]')")
    # the nodes' sockets, logs and the "current cluster" file in a folder of their own (a
    # ray.init() elsewhere on this machine must not find this cluster, nor this one another)
    temp = tempfile.mkdtemp(prefix="amray-", dir="/tmp")
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "PYTHONPATH", "RAY_ADDRESS",
                                            INLINE_LIMIT)}
    os.environ["RAY_TMPDIR"] = temp
    # every piece's rows are kept in its node's object store until the driver fetches them
    # (as the rows of 10-minute pieces are), not sent along with the reply as small ones are
    os.environ[INLINE_LIMIT] = "0"
    os.environ.pop("RAY_ADDRESS", None)
    # the workers import this module (the test embedder), test_ray and index_helpers
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), *([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else [])])
    nodes = None
    try:
        nodes = Nodes()
        # the nodes listen on this machine's address (Ray turns 127.0.0.1 into it); the
        # workers' output is not copied here, as in the command's own connection
        ray.init(address=nodes.address, logging_level="WARNING", log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        if nodes is not None:
            nodes.cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def nodes(ray_nodes: Nodes) -> Iterator[Nodes]:
    """The cluster with its head and two one-CPU nodes, whatever the test does to it."""
    ray_nodes.restore()
    try:
        yield ray_nodes
    finally:
        ray_nodes.restore()


@contextlib.contextmanager
def ends_within(seconds: int) -> Iterator[None]:
    """A run that hangs (a lost node's pieces waiting for it forever) fails the test
    instead: TimeoutError in this thread after ``seconds`` (a guard, far above the run's
    few seconds; nothing is measured)."""
    def stop(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the run did not end within {seconds} s")

    before = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def _log(folder: Path) -> Path:
    log = folder / "log"
    log.mkdir(parents=True)
    return log


def _remove_when(nodes: Nodes, log: Path, pids_held: int, names: list[str],
                 also: threading.Event | None = None) -> threading.Thread:
    """A thread that removes the nodes ``names`` once ``pids_held`` workers hold a piece
    (and ``also`` is set, when given)."""
    def run() -> None:
        deadline = time.monotonic() + 120
        while len(list(log.glob("held-*"))) < pids_held and time.monotonic() < deadline:
            time.sleep(0.05)
        if also is not None:
            also.wait(max(0.0, deadline - time.monotonic()))
        for name in names:
            nodes.remove(name)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------ the tests


def test_pieces_run_on_both_nodes_and_the_index_is_that_of_one_process(
    nodes: Nodes, tmp_path: Path
) -> None:
    folder, _, one, many = archive_and_its_index(tmp_path)
    log = _log(tmp_path)
    ids = nodes.ids()
    assert set(ids) == {"head", "node_a", "node_b"} and len(set(ids.values())) == 3
    report = index_audio_ray([folder], many, functools.partial(node_embedder, log=log),
                             nodes.address, workers=2, piece_windows=1, progress=False)
    assert_same_index(one, many)
    # one worker on each one-CPU node (none on the head, which has no CPU)
    up = workers_up(log)
    assert sorted(w[0] for w in up) == sorted([ids["node_a"], ids["node_b"]])
    assert all(w[1:3] == ["cpu", ""] for w in up)  # no GPU asked for, none given
    # the pieces ran on both nodes: the workers' own record and the driver's report agree
    by_node = pieces_by_node(log)
    assert set(by_node) == {ids["node_a"], ids["node_b"]}
    assert report.nodes == dict(by_node)
    assert report.pieces == sum(by_node.values()) == sum(WINDOWS.values())
    assert (report.workers, report.retried) == (2, 0)
    assert sorted(report.added) == sorted(WINDOWS)
    assert "on 2 workers, 2 nodes" in report.summary()


def test_a_node_lost_mid_run_leaves_its_pieces_to_the_other_node(
    nodes: Nodes, tmp_path: Path
) -> None:
    folder, _, one, many = archive_and_its_index(tmp_path)
    log = _log(tmp_path)
    ids = nodes.ids()
    # node_b embeds 3 pieces, then holds the 4th (and has another queued) until it is
    # removed; node_a, alone from then on, embeds them again with the rest
    factory = functools.partial(node_embedder, log=log, hold_nodes=(ids["node_b"],),
                                hold_after=3)
    remover = _remove_when(nodes, log, 1, ["node_b"])
    with ends_within(180):
        report = index_audio_ray([folder], many, factory, nodes.address, workers=2,
                                 piece_windows=1, progress=False)
    remover.join(timeout=60)
    assert "node_b" not in nodes.ids()
    assert_same_index(one, many)
    assert sorted(report.added) == sorted(WINDOWS)
    assert sorted(Path(s).name for s, _ in report.failed) == ["broken.wav", "short.wav"]
    by_node = pieces_by_node(log)
    assert by_node[ids["node_b"]] == 3
    # the driver counts a piece on the node whose rows it received: node_b's finished
    # pieces, but for any whose rows it had not fetched before the node went (lost with
    # it, under load usually the last one): those are embedded again on node_a
    assert report.nodes[ids["node_a"]] == by_node[ids["node_a"]]
    assert report.nodes.get(ids["node_b"], 0) <= 3
    assert sum(report.nodes.values()) == sum(WINDOWS.values())
    # the held piece, and the one queued behind it, were run again on node_a
    assert report.retried >= 1
    assert report.workers == 2  # both took part; node_b's is not back (no node has room)


def test_rows_lost_with_their_node_before_the_driver_fetched_them_are_embedded_again(
    nodes: Nodes, tmp_path: Path
) -> None:
    folder, _, one, many = archive_and_its_index(tmp_path)
    log = _log(tmp_path)
    ids = nodes.ids()
    node_b = ids["node_b"]

    def b_pieces() -> int:
        return pieces_by_node(log)[node_b]

    calls: list[str] = []

    def lose_b_with_rows(name: str) -> None:
        # the driver waits here: a piece node_b finishes now stays in node_b's object
        # store, unfetched, when node_b goes
        calls.append(name)
        if len(calls) > 1:
            return
        before = b_pieces()
        deadline = time.monotonic() + 60
        while b_pieces() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        nodes.remove("node_b")

    with ends_within(180):
        report = index_audio_ray([folder], many, functools.partial(node_embedder, log=log),
                                 nodes.address, workers=2, piece_windows=1, progress=False,
                                 on_commit=lose_b_with_rows)
    assert_same_index(one, many)
    # node_b embedded at least one piece whose rows never reached the driver: node_a
    # embedded it again
    done_on_b = b_pieces()
    assert 1 <= report.nodes[node_b] < done_on_b
    assert report.nodes[ids["node_a"]] == sum(WINDOWS.values()) - report.nodes[node_b]
    assert report.retried >= done_on_b - report.nodes[node_b]


def test_every_node_lost_stops_in_one_line_and_the_next_run_goes_on(
    nodes: Nodes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, one, many = archive_and_its_index(tmp_path)
    log = _log(tmp_path)
    ids = nodes.ids()
    # both nodes hold a piece after 5 pieces each (r0's 7 windows are embedded by then);
    # once r0 is committed, both are removed: no node is left to restart the workers on
    factory = functools.partial(node_embedder, log=log, hold_after=5,
                                hold_nodes=(ids["node_a"], ids["node_b"]))
    r0_committed = threading.Event()

    def note_r0(name: str) -> None:
        if name == "r0.wav":
            r0_committed.set()

    remover = _remove_when(nodes, log, 2, ["node_a", "node_b"], also=r0_committed)
    with ends_within(180), pytest.raises(InputError) as caught:
        index_audio_ray([folder], many, factory, nodes.address, workers=2,
                        piece_windows=1, progress=False, worker_timeout_s=2,
                        on_commit=note_r0)
    remover.join(timeout=60)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no Ray worker has been up for 2 s (2 lost, none restarted")
    assert message.endswith("what was committed stays, run again to go on")
    assert pieces_by_node(log) == {ids["node_a"]: 5, ids["node_b"]: 5}

    # what was committed is intact: those recordings, rows and all, as in one process
    committed = {r.name for r in ArchiveIndex(many).snapshot().recordings}
    assert "r0.wav" in committed and len(committed) < len(WINDOWS)
    state, whole = index_state(many), index_state(one)
    assert state["rows"] == {n: whole["rows"][n] for n in committed}

    # the nodes come back (new ones: new ids); the next run embeds only the rest
    nodes.restore()
    report = index_audio_ray([folder], many, functools.partial(node_embedder, log=_log(
        tmp_path / "again")), nodes.address, workers=2, piece_windows=1, progress=False)
    assert report.unchanged == len(committed)
    assert sorted(report.added) == sorted(set(WINDOWS) - committed)
    assert_same_index(one, many)


def test_gpus_a_node_advertises_but_does_not_have(
    nodes: Nodes, tmp_path: Path, clap_files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--ray-gpus-per-worker 1`` on a cluster whose third node says it has a GPU (it has
    none; torch here is built without CUDA): the worker is placed on that node, given GPU 0
    and device "cuda"; MS-CLAP's loader then refuses (no fallback to the CPU, as
    ``ClapFactory`` documents), and the run stops with that line, the index untouched."""
    import torch

    assert not torch.cuda.is_available()
    folder, _, one, many = archive_and_its_index(tmp_path)
    log = _log(tmp_path)
    nodes.add("gpu_node", num_gpus=1)
    nodes.cluster.wait_for_nodes()
    ids = nodes.ids()

    # the scheduling: one worker (the cluster's GPUs allow one), on the GPU node, with GPU 0
    report = index_audio_ray([folder], many, functools.partial(node_embedder, log=log,
                                                               wait_for=1),
                             nodes.address, gpus_per_worker=1, piece_windows=2,
                             progress=False)
    assert workers_up(log) == [[ids["gpu_node"], "cuda", "0", "0"]]
    assert report.nodes == {ids["gpu_node"]: report.pieces} and report.workers == 1
    assert_same_index(one, many)  # the test embedder ignores the device

    # MS-CLAP on that worker: one line, from the worker, and the index as it was
    ckpt, tok = clap_files
    factory = ClapFactory(str(ckpt), "0" * 64)
    why = "device 'cuda' asked for, but torch sees no CUDA GPU"
    with pytest.raises(InputError, match=f"^no Ray worker could load the embedder \\({why}\\)$"):
        index_audio_ray([folder], many, factory, nodes.address, gpus_per_worker=1,
                        progress=False)
    # the same by default: a cluster with GPUs gives each worker one
    with pytest.raises(InputError, match=why):
        index_audio_ray([folder], many, factory, nodes.address, progress=False)
    assert_same_index(one, many)

    # the command line: exit status 2, one line on stderr
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    audio = tmp_path / "clip"
    write_wav(audio / "a.wav", 1, 2.0)
    db = tmp_path / "clap.idx"
    code = main([str(a) for a in ["index", audio, "--db", db, "--checkpoint", ckpt,
                                  "--tokenizer", tok, "--cache-dir", tmp_path / "cache",
                                  "--no-progress", "--ray", nodes.address,
                                  "--ray-gpus-per-worker", "1"]])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == f"audiomoment: error: no Ray worker could load the embedder ({why})\n"
    assert not ArchiveIndex(db).snapshot().recordings
