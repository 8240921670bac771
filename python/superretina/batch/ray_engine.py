"""The Ray engine: a pool of actors, each opening the application (and its model) once.

With no address it starts a local Ray instance on this machine; with ``--address`` (or
``$RAY_ADDRESS``) it joins a running cluster. Workers read the images by path and write each
pair's files into a scratch folder whose bytes come back to the driver, which writes the
outputs; so the images (and the config, pipeline and model paths) must be readable at the same
paths on every node, and only the driver needs the output folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from ..app import AppError
from .pairs import PairJob
from .worker import PairOutput


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise AppError(f"--engine ray needs Ray: pip install -e '.[cluster]' ({exc})") from None
    return ray


def _check_reachable(address: str) -> None:
    """Refuse at once a HOST:PORT where nothing listens (Ray itself retries for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # ray://, auto, ...: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise AppError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                       "start one with `ray start --head` (docs/batch.md)") from None


class _PairActor:
    """One worker: opens the application once and registers the pairs it is given."""

    def __init__(self, config, pipeline, runtime, device=None):
        from superretina.app import open_app
        self.app = open_app(config, pipeline, runtime, device=device)
        self.config = config

    def setup(self, pictures: str) -> dict:
        from superretina.batch.fingerprint import app_setup
        return app_setup(self.app, config_file=self.config, pictures=pictures)

    def run(self, job: PairJob, pictures: str) -> PairOutput:
        from superretina.batch.worker import process_pair
        return process_pair(self.app, job, pictures, None)

    def run_series(self, job, pictures: str) -> PairOutput:
        from superretina.series.batch import process_series
        return process_series(self.app, job, pictures, None)

    def peak_rss_mib(self) -> float:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RayEngine:
    """Pairs spread over ``workers`` Ray actors (default: one per CPU of the cluster)."""

    name = "ray"

    def __init__(self, config, pipeline, runtime, workers: int | None = None, address: str | None = None,
                 num_cpus: int | None = None, device: str | None = None):
        ray = self._ray = _import_ray()
        address = address or os.environ.get("RAY_ADDRESS") or None
        self._started = not ray.is_initialized()
        if self._started and address:
            _check_reachable(address)
        if self._started:
            # Workers import the package the driver runs (its folder first on their PYTHONPATH):
            # a local instance then runs exactly this code, and cluster nodes need it at the same path.
            root = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
            # "local": always a new instance here (address=None would join whatever cluster
            # `ray start` last left in /tmp/ray, even a stopped one).
            kwargs = dict(address=address or "local", include_dashboard=False, log_to_driver=False,
                          configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
            if address is None:
                kwargs["num_cpus"] = num_cpus or os.cpu_count()
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError) as exc:
                where = f"Ray cluster at {address}" if address else "a local Ray instance"
                hint = ("; a cluster started by `ray start` uses token authentication: set RAY_AUTH_MODE=token "
                        "here, with the cluster's token in ~/.ray/auth_token or $RAY_AUTH_TOKEN") if address else ""
                raise AppError(f"cannot join {where} ({' '.join(str(exc).split())[:200]}){hint}") from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.n = max(1, int(workers or cpus))
        abs_or_none = (lambda p: str(Path(p).resolve()) if p else None)
        actor = ray.remote(num_cpus=min(1, cpus / self.n))(_PairActor)
        self.actors = [actor.remote(abs_or_none(config), abs_or_none(pipeline), runtime, device)
                       for _ in range(self.n)]
        self._inflight: dict = {}

    @property
    def workers(self) -> int:
        return self.n

    def setup(self, pictures: str) -> dict:
        """The workers' setup; refuses a cluster whose nodes disagree (e.g. another model file, or a
        node whose engine runs on another device)."""
        setups = self._ray.get([a.setup.remote(pictures) for a in self.actors])
        from .fingerprint import setup_sha
        keys = {setup_sha(s) for s in setups}
        if len(keys) != 1:
            raise AppError(f"the Ray workers run {len(keys)} different setups (model, pipeline or config files, "
                           "or the device their engine runs on, differ between nodes); make them identical")
        return setups[0]

    def map(self, jobs: Iterable[PairJob], pictures: str, dest_for=None,
            work: str = "pair") -> Iterator[tuple[PairJob, PairOutput]]:
        """``work``: "pair" or "series" (one series per actor at a time)."""
        ray = self._ray
        queue = list(jobs)[::-1]
        idle = list(self.actors)
        while queue or self._inflight:
            while queue and idle:  # one pair per actor at a time: the next goes to whoever is free
                actor, job = idle.pop(), queue.pop()
                method = actor.run_series if work == "series" else actor.run
                self._inflight[method.remote(job, pictures)] = (job, actor)
            ready, _ = ray.wait(list(self._inflight), num_returns=1)
            for ref in ready:
                job, actor = self._inflight.pop(ref)
                idle.append(actor)
                yield job, ray.get(ref)

    def drain(self) -> Iterator[tuple[PairJob, PairOutput]]:
        """After an interruption: the pairs already running, as they finish."""
        ray = self._ray
        for ref, (job, _) in list(self._inflight.items()):
            try:
                yield job, ray.get(ref, timeout=120)
            except Exception:  # noqa: BLE001 - already interrupting; the pair reruns next time
                pass
        self._inflight.clear()

    def peak_rss_mib(self) -> list[float]:
        """Peak resident memory of each worker process (MiB)."""
        return self._ray.get([a.peak_rss_mib.remote() for a in self.actors])

    def close(self) -> None:
        for a in self.actors:
            try:
                self._ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        if self._started:
            self._ray.shutdown()
