"""Confirmation modals for destructive actions: say exactly what will happen, and make
confirming a deliberate act (the focused button is Cancel; confirm is ``y`` or a click).

The texts are built by pure functions from the read model, so tests can check them.
"""

from __future__ import annotations

from collections import defaultdict

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from console.core.state import MOVING_STATES, RolloutView
from console.core.text import printable
from screens.traffic import pool_members, versions_of

LIST_HOSTS = 12


def _names(hosts: list[str]) -> str:
    if len(hosts) <= LIST_HOSTS:
        return ", ".join(hosts)
    return ", ".join(hosts[:LIST_HOSTS]) + f", … (+{len(hosts) - LIST_HOSTS} more)"


def rollback_text(view: RolloutView) -> tuple[str, str]:
    """(title, body) for the rollback modal: which hosts, back to which version; in
    blue-green, the switch back instead (no host is reverted)."""
    if view.has_pools:
        return _switch_back_text(view)
    changed = view.changed_hosts()
    if not changed:
        return "Roll back", "No host has been changed yet: rollback would do nothing."
    by_version: dict[str, list[str]] = defaultdict(list)
    for name in changed:
        by_version[view.hosts[name].previous_version or "unknown (not recorded)"].append(name)
    lines = [
        f"The rollout pauses, then runs the rollback steps on the {len(changed)} "
        f"host{'s' * (len(changed) != 1)} that were changed, newest batch first, "
        "batched and health-gated. Untouched hosts are not touched.",
        "",
    ]
    if view.original_weights:  # a canary by weight: its share goes first
        lines[0:0] = [
            "First every server of the load balancer gets its weight back (the canary "
            "hosts none until they are reverted): the canary's share of the traffic "
            "ends at once.",
            "",
        ]
    for version, hosts in sorted(by_version.items()):
        lines.append(f"back to {version}: {len(hosts)} host{'s' * (len(hosts) != 1)}")
        lines.append(f"  {_names(hosts)}")
    return f"Roll back {len(changed)} host{'s' * (len(changed) != 1)}?", "\n".join(lines)


def rollback_label(view: RolloutView) -> tuple[str, str]:
    """The rollback modal's confirm button, and what the console says once it is sent:
    ``Roll back 4 hosts`` / ``rolling back 4 hosts``; in blue-green ``Switch back to
    blue`` / ``switching traffic back to blue``."""
    if view.has_pools:
        if view.switched:
            old = printable(view.start_live or view.live_pool)
            return f"Switch back to {old}", f"switching traffic back to {old}"
        return "Roll back", "rolling back"
    n = len(view.changed_hosts())
    hosts = f"{n} host{'s' * (n != 1)}"
    return f"Roll back {hosts}", f"rolling back {hosts}"


def _switch_back_text(view: RolloutView) -> tuple[str, str]:
    """Blue-green: the rollback is the switch back to the pool live at the start."""
    old = view.start_live or view.live_pool
    new = view.start_idle or view.idle_pool
    pools = pool_members(view)
    olds, news = pools.get(old, []), pools.get(new, [])
    if not view.switched:
        return (
            "Roll back (traffic never left " + printable(old) + ")",
            printable(
                f"Traffic never left pool {old}: there is nothing to switch back. The "
                f"rollout stops, rolled back; pool {new} ({len(news)} hosts, on "
                f"{versions_of(news)}) stays idle, out of traffic. Nothing is reverted."
            ),
        )
    body = (
        f"Blue-green: the rollback is the switch back, in one step. Pool {old} "
        f"({len(olds)} hosts, on {versions_of(olds)}) takes the traffic again, then "
        f"pool {new} ({len(news)} hosts, on {versions_of(news)}) is drained and left "
        "idle. Nothing is deployed or reverted: it takes seconds, and the rollout ends "
        "rolled back."
    )
    return f"Switch traffic back to {printable(old)}?", printable(body)


def abort_text(view: RolloutView) -> tuple[str, str]:
    """(title, body) for the abort modal: what is cancelled and what is left as is."""
    moving = [n for n, h in view.hosts.items() if h.state in MOVING_STATES]
    changed = view.changed_hosts()
    on_new = [n for n in changed if view.hosts[n].version == view.version]
    lines = [
        "Abort cancels every in-flight remote command now and starts nothing new. "
        "Hosts are left exactly as they are: no rollback.",
        "",
        f"in flight, will be interrupted: {len(moving)}",
    ]
    if moving:
        lines.append(f"  {_names(moving)}")
    lines.append(f"changed so far: {len(changed)} ({len(on_new)} on {view.version or 'new'})")
    lines.append(f"untouched: {len(view.hosts) - len(changed)}")
    return "Abort the rollout?", "\n".join(lines)


def quit_text(view: RolloutView, rollout_id: str) -> tuple[str, str]:
    moving = sum(1 for h in view.hosts.values() if h.state in MOVING_STATES)
    rid = rollout_id or "<id>"
    if moving:
        flight = (
            f"the {moving} host{'s' * (moving != 1)} in flight finish their steps and "
            "health gating before the console exits"
        )
    else:
        flight = "no host is in flight, so the console exits at once"
    body = (
        f"The rollout is still running. Quitting pauses it first: no new host starts; "
        f"{flight}.\n\nResume it later with:  rolldeck resume {rid}"
    )
    return "Pause the rollout and quit?", body


class ConfirmScreen(ModalScreen[bool]):
    """Cancel is focused; confirming needs ``y`` or a click on the confirm button."""

    BINDINGS = [
        Binding("y", "confirm", "Confirm", id="confirm-yes", tooltip="Do it"),
        Binding("n,escape", "cancel", "Cancel", id="confirm-no", tooltip="Do nothing"),
    ]
    AUTO_FOCUS = "#cancel"

    def __init__(self, title: str, body: str, confirm_label: str, *, danger: bool = True) -> None:
        super().__init__(classes="confirm")
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            # host names and versions are from outside: no markup, no escapes
            yield Static(printable(self.title_text), id="dialog-title", markup=False)
            yield Static(printable(self.body, multiline=True), id="dialog-body", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel (n)", id="cancel", variant="default")
                yield Button(
                    f"{self.confirm_label} (y)",
                    id="confirm",
                    variant="error" if self.danger else "warning",
                )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
