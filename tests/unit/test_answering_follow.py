"""The one follow rule (slm.answering.follow.Follower) behind ModelHost and LiveAnswerer: throttled checks,
one switch at a time, and a failed index reload or load keeps the previous model serving."""

from __future__ import annotations

import threading

from slm.answering.follow import Follower


class Owner:
    """The smallest owner: serves a name, loads by name, can be told to fail."""

    def __init__(self, serving="v1", wanted="v1"):
        self.serving, self.want = serving, wanted
        self.index_changes, self.reloads, self.loads = [], 0, []
        self.fail_load = self.fail_reload = self.fail_wanted = False
        self.release = threading.Event()
        self.release.set()

    def reload_index(self):
        self.reloads += 1
        if self.fail_reload:
            raise OSError("index folder vanished")
        return bool(self.index_changes and self.index_changes.pop(0))

    def wanted(self):
        if self.fail_wanted:
            raise RuntimeError("registry unreadable")
        return self.want

    def switch(self, name):
        self.release.wait(5)
        self.loads.append(name)
        if self.fail_load:
            raise RuntimeError("weights missing")
        self.serving = name

    def follower(self, **kwargs):
        return Follower(reload_index=self.reload_index, wanted=self.wanted, serving=lambda: self.serving,
                        switch=self.switch, **kwargs)


def test_a_new_model_is_loaded_and_swapped_in_the_foreground():
    owner = Owner()
    follow = owner.follower(check_every=0.0, background=False)
    assert follow.refresh() is False and owner.loads == []  # nothing changed: nothing loaded
    owner.want = "v2"
    assert follow.refresh() is True and owner.serving == "v2" and owner.loads == ["v2"]
    assert follow.refresh() is False and owner.loads == ["v2"]


def test_checks_are_throttled():
    owner = Owner(wanted="v2")
    follow = owner.follower(check_every=3600.0, background=False)
    assert follow.refresh() is True and owner.reloads == 1
    owner.want = "v3"
    assert follow.refresh() is False and owner.reloads == 1 and owner.serving == "v2"  # too soon to look again


def test_a_new_index_generation_counts_as_a_change():
    owner = Owner()
    owner.index_changes = [True, False]
    follow = owner.follower(check_every=0.0, background=False)
    assert follow.refresh() is True and follow.refresh() is False and owner.loads == []


def test_a_failed_load_keeps_the_previous_model_and_is_retried_later():
    owner = Owner(wanted="v2")
    owner.fail_load = True
    follow = owner.follower(check_every=0.0, background=False)
    assert follow.refresh() is False and owner.serving == "v1"
    owner.fail_load = False
    assert follow.refresh() is True and owner.serving == "v2" and owner.loads == ["v2", "v2"]


def test_a_failed_index_reload_or_registry_check_keeps_serving():
    owner = Owner(wanted="v2")
    owner.fail_reload = True
    follow = owner.follower(check_every=0.0, background=False)
    assert follow.refresh() is True and owner.serving == "v2"  # the adapter check still ran
    owner.fail_reload, owner.fail_wanted = False, True
    assert follow.refresh() is False and owner.serving == "v2"


def test_one_background_switch_at_a_time():
    owner = Owner(wanted="v2")
    owner.release.clear()  # the first load hangs until released
    follow = owner.follower(check_every=0.0, background=True)
    assert follow.refresh() is False  # a background switch reports nothing yet
    for _ in range(5):
        follow.refresh()  # still loading: no second thread
    owner.release.set()
    for _ in range(500):
        if owner.serving == "v2":
            break
        threading.Event().wait(0.01)
    assert owner.serving == "v2" and owner.loads == ["v2"]
