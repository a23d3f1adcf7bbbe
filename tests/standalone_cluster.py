"""A real Spark standalone cluster on loopback for tests: one master and N
workers started from the pyspark package's own launch classes (spark-class),
each in its own process group so that all of them can be killed at the end.

    with StandaloneCluster(tmp_path, workers=2) as cluster:
        cluster.master_url          # spark://127.0.0.1:PORT
        cluster.state()             # the master's JSON (workers, apps)
        cluster.submit([...], env)  # spark-submit --master cluster.master_url ...
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

SPARK_HOME = os.path.dirname(pyspark.__file__)
SPARK_CLASS = os.path.join(SPARK_HOME, "bin", "spark-class")
SPARK_SUBMIT = os.path.join(SPARK_HOME, "bin", "spark-submit")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spark_env(base: dict | None = None) -> dict:
    """The environment Spark's launch scripts need on loopback."""
    env = dict(os.environ if base is None else base)
    env.update(SPARK_HOME=SPARK_HOME, SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_HOSTNAME="localhost")
    # The daemons must not pick up a configuration folder from elsewhere on the machine.
    env.pop("SPARK_CONF_DIR", None)
    return env


class StandaloneCluster:
    def __init__(self, root: Path, workers: int = 2, cores: int = 1, memory: str = "2g",
                 env: dict | None = None, timeout: float = 120):
        self.root = Path(root)
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.env = spark_env(env)
        self.timeout = timeout
        self.port, self.webui_port = free_port(), free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        self.work_dirs = [self.root / f"worker-{i}" for i in range(workers)]
        self.processes: list[subprocess.Popen] = []

    def _launch(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "wb")
        try:
            self.processes.append(subprocess.Popen(
                [SPARK_CLASS, *args], env=self.env, cwd=self.root, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        finally:
            log.close()

    def start(self) -> "StandaloneCluster":
        self.root.mkdir(parents=True, exist_ok=True)
        self._launch("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                "--port", str(self.port), "--webui-port", str(self.webui_port)])
        self._wait_for_master_log()
        self._wait(lambda state: state.get("status") == "ALIVE", "the master to start")
        for i, work_dir in enumerate(self.work_dirs):
            work_dir.mkdir(parents=True, exist_ok=True)
            self._launch(f"worker-{i}", [
                "org.apache.spark.deploy.worker.Worker", self.master_url, "--host", "127.0.0.1",
                "--cores", str(self.cores), "--memory", self.memory, "--work-dir", str(work_dir),
                "--webui-port", str(free_port())])
        self._wait(lambda state: len(self.alive_workers(state)) == self.workers,
                   f"{self.workers} workers to register")
        return self

    def _wait_for_master_log(self) -> None:
        """The master's URL and web UI port as it reports them (a port taken meanwhile makes Spark try the next)."""
        deadline = time.monotonic() + self.timeout
        while True:
            text = (self.root / "master.log").read_text(errors="replace")
            url = re.search(r"Starting Spark master at (spark://\S+)", text)
            ui = re.search(r"MasterWebUI: .* started at http://\S+:(\d+)", text)
            if url and ui:
                self.master_url, self.webui_port = url.group(1), int(ui.group(1))
                return
            if self.processes[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Spark master did not start:\n{self.logs()[-4000:]}")
            time.sleep(0.5)

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.webui_port}/json/", timeout=10) as response:
            return json.load(response)

    @staticmethod
    def alive_workers(state: dict) -> list[dict]:
        return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a Spark daemon exited with code {process.returncode} while waiting "
                                       f"for {what}:\n{self.logs()[-4000:]}")
            try:
                if ready(self.state()):
                    return
            except (OSError, ValueError):
                pass  # web UI not up yet, or its JSON page not yet attached (an HTML page answers)
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}:\n{self.logs()[-4000:]}")
            time.sleep(0.5)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')}"
                         for path in sorted(self.root.glob("*.log")))

    def submit(self, args: list[str], env: dict, cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
        """spark-submit --master this cluster (client deploy mode: the driver runs here)."""
        return subprocess.run([SPARK_SUBMIT, "--master", self.master_url, *args], env=spark_env(env),
                              cwd=cwd, capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        """Kill every daemon's process group (executors and their Python workers included)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group, if any
            except ProcessLookupError:
                pass
            process.wait()

    def __enter__(self) -> "StandaloneCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def interpreter_without_project(root: Path) -> str:
    """A Python with this interpreter's installed packages but not the project.

    The development virtualenv holds the project as an editable install (a .pth
    hook that finds `jobs` in the source tree). A venv that lists the
    site-packages folders in a .pth file gets every dependency but skips the .pth
    hooks inside them, so `jobs` can only come from what Spark ships (--py-files).
    """
    import site
    import venv
    target = Path(root) / "python-without-project"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(target)
    python = target / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return str(python)


if __name__ == "__main__":  # manual use: start a cluster and wait for Ctrl-C / SIGTERM
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with StandaloneCluster(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/standalone")) as cluster:
        print(cluster.master_url, f"http://127.0.0.1:{cluster.webui_port}", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
