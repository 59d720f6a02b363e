"""Task ids: version 7 UUIDs, so that the store's primary-key index grows at its end."""

from __future__ import annotations

import time
import uuid

from qengine.task import _name_words, new_id


def test_an_id_is_a_version_7_uuid_in_hex_with_a_name() -> None:
    task_id, name = new_id()
    parsed = uuid.UUID(task_id)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert parsed.hex == task_id
    assert len(task_id) == 32
    assert len(name.split("-")) >= 4


def test_ids_carry_the_time_they_were_made_and_sort_by_it() -> None:
    before_ms = time.time_ns() // 1_000_000
    first, _ = new_id()
    time.sleep(0.002)
    second, _ = new_id()
    after_ms = time.time_ns() // 1_000_000
    assert before_ms <= int(first[:12], 16) <= int(second[:12], 16) <= after_ms
    assert first < second


def test_ids_made_in_the_same_millisecond_differ() -> None:
    ids = {new_id()[0] for _ in range(10_000)}
    assert len(ids) == 10_000


def test_names_are_four_words_picked_by_the_ids_random_bits() -> None:
    names = {new_id()[1] for _ in range(2_000)}
    assert len(names) == 2_000  # of ~4 x 10^10 names: a clash here is one run in ~20,000
    for name in names:
        first, second, animal, of, noun = name.split("-")
        assert of == "of"
        assert first != second
        assert all(word.isalpha() and word.islower() for word in (first, second, animal, noun))


def test_names_fall_back_to_coolname_when_its_word_lists_move(monkeypatch) -> None:
    import coolname.loader

    def moved(path: object) -> dict[str, object]:
        return {}  # a release without these lists

    monkeypatch.setattr(coolname.loader, "load_config", moved)
    _name_words.cache_clear()
    try:
        assert _name_words() is None
        _, name = new_id()
        assert len(name.split("-")) >= 4
    finally:
        monkeypatch.undo()
        _name_words.cache_clear()
    assert _name_words() is not None
