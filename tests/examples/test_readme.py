"""The README's Python examples run as written.

Each block is found by its first line and run in a subprocess, the way a
reader would paste it; blocks that continue an earlier one (``qengine.configure``
after ``import qengine``) get that one line in front. The Django blocks run in
the Django project tests (tests/examples/test_django_user_project.py and
tests/qdjango/test_readme_django.py); ``test_every_block_is_accounted_for``
keeps a new block from going untested unnoticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from tests.conftest import REDIS_URL
from tests.processes import ROOT, ClusterProcess

README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    found, current = [], None
    for line in README.splitlines():
        if current is None and line.strip() == f"```{language}":
            current = []
        elif current is not None and line.strip() == "```":
            found.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return found


def block(first_line: str, language: str = "python") -> str:
    """The one README block whose first line starts with ``first_line``."""
    matches = [b for b in _blocks(language) if b.startswith(first_line)]
    assert len(matches) == 1, f"{len(matches)} README blocks start with {first_line!r}"
    return matches[0]


RUN_HERE = (
    "import qengine\n\nids = qengine.async_tasks(",
    "import qengine\n\nqengine.configure(secret_key",
    'qengine.configure(\n    name="SQSExample"',
    'qengine.configure(\n    name="MongoDB"',
    "# myapp/brokers.py",
    "qengine.configure(\n    broker_class=",
    "# qengine_memory/__init__.py",
    "import qengine\nimport qengine_memory",
    "from datetime import UTC, datetime\n\nfrom qengine.schedules",
    "qengine.configure(\n    error_reporter=",
    "# qengine_slack/__init__.py",
)
RUN_IN_DJANGO = (
    'Q_CLUSTER = {\n    "error_reporter"',  # settings: the project tests set such keys
    "# settings.py",
    "from qdjango.tasks import (",
    'task_id = async_task(\n    "django.core.mail.send_mail"',
    "from django.contrib import admin",
    '  DATABASES["default"]["OPTIONS"]',  # MariaDB's options, in the project tests
)


def test_every_block_is_accounted_for() -> None:
    known = RUN_HERE + RUN_IN_DJANGO
    unknown = [b[:60] for b in _blocks("python") if not b.startswith(known)]
    assert not unknown, f"README blocks no test runs: {unknown}"


def run(code: str, tmp_path: Path, **env: str) -> str:
    """Run ``code`` as a script in ``tmp_path`` (importable modules go there too)."""
    script = tmp_path / "example.py"
    script.write_text(code)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    environ |= {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", **env}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.sqlite3"


@pytest.mark.redis
@pytest.mark.cluster
def test_the_first_example_gets_its_result_from_a_cluster(tmp_path, redis_url) -> None:
    # The example names Redis db 0 and the cluster name "default": start with an empty queue.
    client = redis.Redis.from_url(REDIS_URL.rsplit("/", 1)[0] + "/0")
    keys = lambda: list(client.scan_iter(match="qengine:default:*"))  # noqa: E731
    assert not keys(), "another run uses the default queue on Redis db 0"
    env = {"QENGINE_STORE": store(tmp_path)}
    cluster_env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    cluster_env |= {
        **env, "PYTHONPATH": str(ROOT), "QENGINE_WORKERS": "2",
        "QENGINE_BROKER": "redis://127.0.0.1:6379/0", "QENGINE_SECRET_KEY": "change-me",
    }  # fmt: skip
    cluster = ClusterProcess(cluster_env, tmp_path / "cluster.log", [])
    try:
        cluster.wait_running()
        printed = run(block("import qengine\n\nqengine.configure(secret_key"), tmp_path, **env)
    finally:
        cluster.shutdown()
        for key in keys():
            client.delete(key)
        client.close()
    assert printed.strip() == "-2.0"


def test_the_sqs_and_mongodb_configurations_are_accepted(tmp_path) -> None:
    for name in ("SQSExample", "MongoDB"):
        first = f'qengine.configure(\n    name="{name}"'
        code = "import qengine\n" + block(first) + "print(qengine.get_config().name)\n"
        assert run(code, tmp_path).strip() == name


@pytest.mark.redis
def test_a_broker_class_of_ones_own_is_used(tmp_path, redis_url) -> None:
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "brokers.py").write_text(block("# myapp/brokers.py"))
    code = (
        "import qengine\n"
        + block("qengine.configure(\n    broker_class=")
        + textwrap.dedent(
            """
        from myapp.brokers import MyQueueBroker
        broker = qengine.get_broker()
        print(type(broker).__name__, broker.ping())
        print(isinstance(MyQueueBroker(qengine.get_config()), qengine.Broker))
        """
        )
    )
    assert run(code, tmp_path).split() == ["LoggingRedisBroker", "True", "True"]


def test_a_broker_kind_is_registered_by_import_or_by_entry_point(tmp_path) -> None:
    package = tmp_path / "qengine_memory"
    package.mkdir()
    (package / "__init__.py").write_text(block("# qengine_memory/__init__.py"))
    example = block("import qengine\nimport qengine_memory")
    run(example + "print(type(qengine.get_broker()).__name__)\n", tmp_path)

    # The entry point, as the pyproject.toml block declares it, for a process that
    # never imports the package itself (a cluster started from the command line).
    toml = block("# pyproject.toml of qengine-memory", "toml")
    group = '[project.entry-points."qengine.brokers"]'
    assert group in toml
    name, _, value = toml.split(group, 1)[1].strip().partition("=")
    entry = f"{name.strip()} = {value.strip().strip(chr(34))}"  # TOML quotes the value
    info = tmp_path / "qengine_memory-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qengine-memory\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[qengine.brokers]\n{entry}\n")
    code = textwrap.dedent(
        """
        import qengine
        qengine.configure(broker="memory://", secret_key="change-me")
        print(type(qengine.get_broker()).__name__)
        """
    )
    assert run(code, tmp_path).strip() == "MemoryBroker"


def test_the_schedules_example_runs(tmp_path) -> None:
    code = block("from datetime import UTC, datetime\n\nfrom qengine.schedules")
    lines = code.rstrip().splitlines()
    # The last two lines are expressions a reader looks at: print them.
    code = "\n".join(lines[:-2] + [f"print({line})" for line in lines[-2:]]) + "\n"
    printed = run(code, tmp_path, QENGINE_STORE=store(tmp_path)).splitlines()
    assert printed[0] == "2026-12-01 06:00:00+00:00"
    assert printed[1].startswith("[")
    assert "myapp.sync.poll" in printed[1]


def test_the_error_reporter_examples_run(tmp_path) -> None:
    code = (
        "import qengine\n"
        + block("qengine.configure(\n    error_reporter=")
        + textwrap.dedent(
            """
        from qengine.runtime import get_reporters
        print(sorted(name for name, _ in get_reporters()))
        """
        )
    )
    assert run(code, tmp_path).strip() == "['rollbar', 'sentry']"
    plugin = block("# qengine_slack/__init__.py")
    run(plugin + "SlackReporter('https://hooks.example.invalid/x')\n", tmp_path)


def test_the_batch_example_queues_in_one_call(tmp_path) -> None:
    code = block("import qengine\n\nids = qengine.async_tasks(") + textwrap.dedent(
        """
        print(len(ids), qengine.queue_size(), qengine.count_group("maths"))
        """
    )
    assert run(code, tmp_path, QENGINE_STORE=store(tmp_path)).split() == ["2", "2", "0"]
