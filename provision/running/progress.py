"""Rendering engine events with rich, on stderr.

On a terminal: a live block, one line per step with its state, elapsed time, a spinner while
it runs (long-running operations included) and import counters as they move. Elsewhere (CI,
pipes): one plain line per event that matters (start, note, done, failed, skipped), and
progress lines only when a counter moves (upload counters only with `verbose`). The run's
summary is the command's to print, once, when it ends. Retries are summed up per step ("waiting: <why>
(12 retries, 3.1 s)") on its live line and on its done/failed line; `verbose` prints each one
as it happens. Usable as a listener: `with Progress() as p: lifecycle.apply(bp, target, p)`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Callable

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from provision.running.engine import Event
from provision.words import plural

ICON = {"pending": "·", "done": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]-[/]"}


class Progress:
    def __init__(self, console: Any = None, live: bool | None = None, show_noop: bool = False,
                 verbose: bool = False):
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.live_mode = self.console.is_terminal if live is None else live
        self.show_noop = show_noop
        self.verbose = verbose
        self._retries: dict[tuple[str, str], dict[str, Any]] = {}   # (project, step) -> {n, since, reason}
        self._lock = threading.RLock()
        # Rows are per (project, step id).
        self._rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._order: list[tuple[str, str]] = []
        self._live: Live | None = None
        self._last_progress: dict[str | tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "Progress":
        if self.live_mode:
            self._live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False,
                              get_renderable=self._render)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    # ------------------------------------------------------------------ listener
    def __call__(self, event: Event) -> None:
        with self._lock:
            self._update(event)
            if not self.live_mode:
                self._print(event)

    def _retry_summary(self, project: str, step: str) -> str:
        r = self._retries.get((project, step))
        if not r:
            return ""
        n = r["n"]
        return f"{r['reason']} ({plural(n, 'retry')}, {time.monotonic() - r['since']:.1f} s)"

    def interrupted(self) -> str:
        """What to tell someone who pressed Ctrl-C: what finished, what was in flight, what to do."""
        with self._lock:
            rows = [self._rows[k] for k in self._order]
        def by_project(state: str) -> str:
            groups: dict[str, list[str]] = {}
            for r in rows:
                if r["state"] == state and r["detail"] != "no changes":
                    groups.setdefault(r["project"], []).append(r["id"])
            return "; ".join(f"{p}: {', '.join(ids)}" if p else ", ".join(ids) for p, ids in groups.items())

        done, running = by_project("done"), by_project("running")
        lines = ["interrupted (Ctrl-C): nothing more was started"]
        if done:
            lines.append(f"  finished: {done}")
        if running:
            lines.append(f"  in flight (stopped at their next wait; Google may still finish them): {running}")
        lines.append("  run the same command again: apply picks up where it stopped and duplicates nothing")
        return "\n".join(lines)

    def _update(self, e: Event) -> None:
        if e.kind == "retry":
            r = self._retries.setdefault((e.project, e.step), {"n": 0, "since": time.monotonic()})
            r["n"] += 1
            r["reason"] = (e.message or "").splitlines()[0][:160]
        # Rows are per (project, step): several blueprints applied at once each have their own.
        if e.kind == "plan" and e.steps:
            for s in e.steps:
                key = (e.project, s.id)
                if key not in self._rows:
                    self._order.append(key)
                self._rows[key] = {"id": s.id, "project": e.project, "action": s.action, "state": "pending",
                                   "t0": None, "elapsed": 0.0, "detail": ", ".join(s.changes[:2])}
            return
        row = self._rows.get((e.project, e.step))
        if row is None:
            return
        if e.kind == "start":
            row.update(state="running", t0=time.monotonic())
        elif e.kind == "progress":
            row["detail"] = e.message + (f" [{e.done}/{e.total}]" if e.total else "")
        elif e.kind == "retry":
            row["detail"] = "waiting: " + self._retry_summary(e.project, e.step)
        elif e.kind in ("done", "failed", "skipped"):
            row.update(state=e.kind, elapsed=e.elapsed, detail=(e.message or "").splitlines()[0] if e.message else "")

    def _print(self, e: Event) -> None:
        c = self.console
        tag = f"[dim]{escape(e.project)}[/] " if e.project else ""
        e = _escaped(e, escape)
        if e.kind == "reading":
            c.print(f"{tag}{e.message}", highlight=False)
        elif e.kind == "start":
            c.print(f"{tag}[bold]{e.step}[/] {e.action}…" + (f" {e.message}" if e.message else ""), highlight=False)
        elif e.kind == "retry":
            if self.verbose:
                c.print(f"{tag}[yellow]{e.text()}[/]", highlight=False, markup=True)
        elif e.kind == "note":
            c.print(f"{tag}[cyan]note[/] {e.step}: {e.message}", highlight=False)
        elif e.kind == "waiting":   # for another run's lock: said once per holder, not at every look
            if self._last_progress.get((e.project, "waiting")) != e.message:
                self._last_progress[(e.project, "waiting")] = e.message
                c.print(f"{tag}[yellow]{e.message}[/]", highlight=False)
        elif e.kind == "progress":
            if e.step.split(":")[0] == "upload" and not self.verbose:
                return   # a file counter is chatter in a log: its step's start and done lines say enough
            # In a log, a counter line every tenth of the way (and the last one) is enough.
            tenth = (10 * e.done) // e.total if e.total and e.done is not None else e.done
            key = (tenth, e.total, e.message if e.total is None else None)
            if self._last_progress.get(e.step) != key:
                self._last_progress[e.step] = key
                c.print(f"{tag}  {e.step}: {e.message}" + (f" \\[{e.done}/{e.total}]" if e.total else ""),
                        highlight=False)
        elif e.kind == "done":
            if e.message == "no changes" and not self.show_noop:
                return
            c.print(f"{tag}{ICON['done']} {e.step} ({e.elapsed:.1f}s)" + (f" {e.message}" if e.message else "")
                    + self._retried(e), highlight=False)
        elif e.kind == "failed":
            c.print(f"{tag}{ICON['failed']} {e.step} failed after {e.elapsed:.1f}s" + self._retried(e), highlight=False)
        elif e.kind == "skipped":
            c.print(f"{tag}{ICON['skipped']} {e.step} skipped ({e.message})", highlight=False)
        # "finished" is not printed: the command prints the run's one summary when it ends.

    def _retried(self, e: Event) -> str:
        summary = self._retry_summary(e.project, e.step)
        return f" [dim](after waiting: {escape(summary)})[/]" if summary and not self.verbose else ""

    # ------------------------------------------------------------------ live view
    def _render(self) -> Any:
        with self._lock:
            table = Table.grid(padding=(0, 1))
            table.add_column(width=2)
            table.add_column(no_wrap=True)
            table.add_column(no_wrap=True)
            table.add_column(justify="right", no_wrap=True)
            table.add_column(overflow="ellipsis", no_wrap=True)
            several = len({project for project, _ in self._order}) > 1
            for key in self._order:
                row = self._rows[key]
                sid = f"{row['project']} {row['id']}" if several else row["id"]
                if row["state"] == "done" and row["detail"] == "no changes" and not self.show_noop:
                    continue
                if row["state"] == "running":
                    icon: Any = Spinner("dots")
                    elapsed = time.monotonic() - (row["t0"] or time.monotonic())
                else:
                    icon = Text.from_markup(ICON.get(row["state"], "·"))
                    elapsed = row["elapsed"]
                table.add_row(icon, sid, row["action"], f"{elapsed:.1f}s" if row["state"] != "pending" else "",
                              Text(row["detail"] or ""))
            return table


def _escaped(e: Event, escape: Callable[[str], str]) -> Event:
    """A copy of the event whose free text cannot be taken for rich markup."""
    return replace(e, step=escape(e.step), message=escape(e.message or ""))
