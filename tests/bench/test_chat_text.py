from bench.chat_text import MAX_CHARS, MIN_CHARS, messages


def test_messages_are_distinct_and_within_length() -> None:
    texts = messages(500)
    assert len(set(texts)) == 500
    assert all(MIN_CHARS <= len(t) <= MAX_CHARS for t in texts)
    assert not any(t.startswith("/") for t in texts)  # a slash would make it a command


def test_messages_vary_in_length_and_repeat_for_a_seed() -> None:
    texts = messages(200, seed=3)
    assert min(map(len, texts)) < 120 and max(map(len, texts)) > 300
    assert messages(200, seed=3) == texts
    assert messages(200, seed=4) != texts
