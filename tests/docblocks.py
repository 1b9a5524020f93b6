"""Run the fenced code blocks of a markdown page, in order, the way a reader would.

    python tests/docblocks.py docs/quickstart.md          # run one page, print what ran
    python tests/docblocks.py --show docs/quickstart.md   # ... and what each block printed

What each block does:

- ```bash / ```sh: runs in ``bash -euo pipefail``; ``cd`` carries over to the page's next blocks.
- ```python: runs in a fresh interpreter; a traceback names the page and its line.
- a block with ``title="path"`` (any language): written to ``path``, relative to the current
  directory of the page at that point; not run.
- ```text, ```console and every other language: output or illustration; not run.

An HTML comment on the line just before a block (invisible on the site) changes that:

- ``<!-- docs-test: fails -->``: the block must exit non-zero and print one line on stderr,
  equal to the ```text block that follows it (the exact error a reader will see).
- ``<!-- docs-test: serve URL -->``: a server; started in the background, done once ``URL``
  answers 200, then stopped.
- ``<!-- docs-test: needs cuda -->``: run only where torch sees a GPU.
- ``<!-- docs-test: not run: REASON -->``: not run; the reason is required.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RUN = {"bash", "sh", "python"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<info>[^`\n]*)$")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<what>.+?)\s*-->\s*$")
BLOCK_TIMEOUT = 240  # seconds; a docs block is meant to take well under a minute


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    title: str | None
    code: str
    marker: str | None = None

    @property
    def where(self) -> str:
        return f"{_display(self.page)}:{self.line}"


@dataclass
class PageResult:
    page: Path
    ran: list[Block] = field(default_factory=list)
    written: list[Block] = field(default_factory=list)
    not_run: list[tuple[Block, str]] = field(default_factory=list)


class BlockFailed(AssertionError):
    """A block did not do what the page says; the message names the page and line."""


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def parse(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, with the ``docs-test`` marker just above each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        found = FENCE.match(lines[i])
        if not found:
            i += 1
            continue
        indent, fence, info = found["indent"], found["fence"], found["info"].strip()
        lang = info.split()[0] if info else ""
        title = re.search(r'title="([^"]+)"', info)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            raise BlockFailed(f"{_display(page)}:{i + 1}: code block never closed")
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = MARKER.match(lines[k].strip()) if k >= 0 else None
        blocks.append(Block(page, i + 1, lang, title[1] if title else None,
                            "\n".join(body) + "\n", marker["what"] if marker else None))
        i = j + 1
    return blocks


def block_env(workdir: Path) -> dict[str, str]:
    """The environment of every block: this interpreter first on PATH, this checkout importable."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(REPO / "plugins"), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["HOME"] = str(workdir / ".home")  # caches and dotfiles stay in the throwaway dir
    env["HF_HOME"] = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    env["TORCH_HOME"] = os.environ.get("TORCH_HOME", str(Path.home() / ".cache" / "torch"))
    return env


def make_workdir(root: Path, data: Path | None) -> Path:
    """A directory that looks like the repository root: its files linked, ``data/`` copied."""
    root.mkdir(parents=True, exist_ok=True)
    skip = {".git", "data", ".venv", "autotransfer-out", "demo-out", ".pytest_cache",
            ".ruff_cache", "site"}
    for entry in REPO.iterdir():
        if entry.name in skip or entry.suffix == ".db":
            continue
        (root / entry.name).symlink_to(entry)
    if data is not None:
        shutil.copytree(data, root / "data", symlinks=True)
    (root / ".home").mkdir()
    return root


def run_page(page: Path, workdir: Path, *, log=None, show: bool = False) -> PageResult:
    """Run every block of ``page`` in ``workdir``; raise :class:`BlockFailed` at the first
    block that does not do what the page says."""
    blocks = parse(page)
    result = PageResult(page)
    env = block_env(workdir)
    cwd_file = workdir / ".home" / "cwd"
    cwd_file.write_text(str(workdir))
    for index, block in enumerate(blocks):
        cwd = Path(cwd_file.read_text().strip())
        marker = block.marker or ""
        if block.title:
            target = cwd / block.title
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
            result.written.append(block)
            continue
        if block.lang not in RUN:
            continue
        if marker.startswith("not run"):
            reason = marker.partition(":")[2].strip()
            if not reason:
                raise BlockFailed(f"{block.where}: 'not run' needs a reason")
            result.not_run.append((block, reason))
            continue
        if marker == "needs cuda" and not _has_cuda():
            result.not_run.append((block, "needs a CUDA GPU"))
            continue
        if log:
            log(f"{block.where} ({block.lang}) ...")
        started, cpu = time.perf_counter(), _children_cpu()
        if marker.startswith("serve "):
            _serve(block, marker.removeprefix("serve ").strip(), cwd, env)
        elif marker == "fails":
            expected = blocks[index + 1] if index + 1 < len(blocks) else None
            if expected is None or expected.lang != "text":
                raise BlockFailed(f"{block.where}: a 'fails' block must be followed by a "
                                  "```text block with the expected error")
            _expect_failure(block, expected, cwd, env, cwd_file)
        elif marker and marker != "needs cuda":
            raise BlockFailed(f"{block.where}: unknown docs-test marker {marker!r}")
        else:
            done = _run(block, cwd, env, cwd_file)
            if log and show:
                log(done.stdout + done.stderr)
        if log:
            log(f"    {time.perf_counter() - started:.1f}s wall, "
                f"{_children_cpu() - cpu:.1f}s CPU")
        result.ran.append(block)
    return result


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _command(block: Block, cwd_file: Path) -> list[str]:
    if block.lang == "python":
        # compiled under the page's name, so that a traceback points into the page
        runner = (
            "import sys; src = sys.argv[1]; "
            f"exec(compile('\\n' * {block.line} + src, {block.where.rsplit(':', 1)[0]!r}, "
            "'exec'), {'__name__': '__main__'})"
        )
        return [sys.executable, "-c", runner, block.code]
    script = f"set -euo pipefail\n{block.code}\npwd > {shlex_quote(str(cwd_file))}\n"
    return ["bash", "-c", script]


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _run(block: Block, cwd: Path, env: dict[str, str], cwd_file: Path):
    try:
        done = subprocess.run(_command(block, cwd_file), cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BlockFailed(f"{block.where}: still running after {BLOCK_TIMEOUT}s") from None
    if done.returncode != 0:
        raise BlockFailed(
            f"{block.where}: exit status {done.returncode}\n--- block ---\n{block.code}"
            f"--- stdout (end) ---\n{done.stdout[-3000:]}\n--- stderr (end) ---\n"
            f"{done.stderr[-3000:]}"
        )
    return done


def _expect_failure(block: Block, expected: Block, cwd: Path, env, cwd_file: Path) -> None:
    done = subprocess.run(_command(block, cwd_file), cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT)
    if done.returncode == 0:
        raise BlockFailed(f"{block.where}: expected the command to fail, but it succeeded")
    got = done.stderr.strip()
    want = expected.code.strip()
    if got != want:
        raise BlockFailed(
            f"{block.where}: the error changed; update the text block at {expected.where}\n"
            f"page says: {want}\nCLI says:  {got}"
        )


def _serve(block: Block, url: str, cwd: Path, env: dict[str, str]) -> None:
    process = subprocess.Popen(["bash", "-c", f"set -euo pipefail\n{block.code}"], cwd=cwd,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BlockFailed(f"{block.where}: the server exited with status "
                                  f"{process.returncode}:\n{process.stdout.read()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise BlockFailed(f"{block.where}: {url} did not answer within 90 s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def main(argv: list[str]) -> None:
    import tempfile

    show = "--show" in argv  # print what each block printed
    for name in [a for a in argv if a != "--show"]:
        page = Path(name).resolve()
        with tempfile.TemporaryDirectory() as tmp:
            data = REPO / "data"
            workdir = make_workdir(Path(tmp) / "work", data if data.is_dir() else None)
            result = run_page(page, workdir, log=print, show=show)
        print(f"{_display(page)}: {len(result.ran)} run, {len(result.written)} files written, "
              f"{len(result.not_run)} not run")
        for block, reason in result.not_run:
            print(f"  not run {block.where}: {reason}")


if __name__ == "__main__":
    main(sys.argv[1:])
