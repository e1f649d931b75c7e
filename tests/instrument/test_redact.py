"""The redactor: secrets in the shapes they take in payloads and exceptions go; ordinary text
stays."""

from __future__ import annotations

import pytest

from blameset.instrument._redact import Redactor


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgres://admin:s3cr3tPass@10.0.0.5/db", "s3cr3tPass"),
        ("redis://:pw123@cache:6379", "pw123"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "eyJzdWIiOiIxMjM0In0"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
            "MIIEvQIBADANBg",
        ),
        ('{"api_key": "abcd1234efgh", "password": "hunter22"}', "hunter22"),
        ("mail a.b@mail.example.co.uk today", "a.b@mail.example.co.uk"),
        ("key sk-ant-api03-abcdefghijklmnopqrstuv", "abcdefghijklmnopqrstuv"),
    ],
)
def test_the_redactor_catches_secrets_in_awkward_shapes(text: str, secret: str):
    """Credentials in URLs, JWTs, basic auth, PEM keys, JSON pairs, e-mail, provider keys."""
    assert secret not in Redactor()(text)


@pytest.mark.parametrize(
    "text", ["logo@2x.png", "The bearer instrument", "Token: completion", "secret = consistency"]
)
def test_the_redactor_leaves_ordinary_text_alone(text: str):
    """Words that merely look like labels are not redacted."""
    assert Redactor()(text) == text


def test_the_redactor_takes_long_unbroken_text():
    """60 KB without spaces (an attachment) goes through whole; how long it takes (it must not be
    quadratic) is bench/export.py's to measure, not a test's."""
    blob = ("ab.c-" * 12_000) + "@x"
    assert Redactor()(blob) == blob


# --- the corpus: every secret kind goes, every id stays -------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from blameset.instrument._redact import is_sensitive_key  # noqa: E402

from .secrets_corpus import CUSTOM_PATTERNS, SAFE, SECRETS  # noqa: E402

REDACT = Redactor(CUSTOM_PATTERNS)


def test_the_corpus_has_forty_secrets_of_every_kind():
    """The end-to-end checks draw on at least 40 secrets, each present in its own text."""
    assert len(SECRETS) >= 40
    assert all(secret in text for _, text, secret in SECRETS)


@pytest.mark.parametrize(("name", "text", "secret"), SECRETS, ids=[s[0] for s in SECRETS])
def test_every_secret_in_the_corpus_is_removed_and_named(name: str, text: str, secret: str):
    """Each secret of the corpus is gone from the scrubbed text and a [REDACTED:kind] says so."""
    out = REDACT(text)
    assert secret not in out
    assert "[REDACTED:" in out


@pytest.mark.parametrize("text", SAFE)
def test_ids_hashes_versions_and_model_names_pass_unchanged(text: str):
    """Trace/span ids, version sets, git SHAs, hashes, UUIDs, model names: not one character
    changes."""
    assert REDACT(text) == text


def test_what_is_replaced_says_what_it_was():
    """The mark names the kind: a GitHub token is a github_token, a card a card_number."""
    assert REDACT("ghp_16C7e42F292c6912E7710c838347Ae178B4a") == "[REDACTED:github_token]"
    assert REDACT("4111111111111111") == "[REDACTED:card_number]"
    assert REDACT("password: letmein") == "password: [REDACTED:password]"


def test_a_card_number_failing_luhn_is_left():
    """16 digits that fail the Luhn check are a number, not a card."""
    assert REDACT("order 4111111111111112") == "order 4111111111111112"


def test_scrubbing_twice_changes_nothing_more():
    """Redacted text goes through again unchanged (exporters may meet it twice)."""
    for _, text, _ in SECRETS:
        once = REDACT(text)
        assert REDACT(once) == once


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db.password",
        "http.request.header.authorization",
        "x-api-key",
        "apiKey",
        "aws_secret_access_key",
        "refresh_token",
        "Cookie",
        "session",
        "private_key",
        "credentials",
    ],
)
def test_a_key_naming_a_credential_hides_the_whole_value(key: str):
    """By name: the value of such a key goes whole, whatever it looks like."""
    assert is_sensitive_key(key)
    assert REDACT.value(key, "plain words only").startswith("[REDACTED:")
    assert REDACT.mapping({key: ["a", "b"]})[key] == [REDACT.value(key, "a")] * 2


@pytest.mark.parametrize(
    "key",
    [
        "gen_ai.usage.input_tokens",
        "gen_ai.request.max_tokens",
        "gen_ai.request.model",
        "session.id",
        "blameset.version_set",
        "author",
        "code.function.name",
    ],
)
def test_keys_that_merely_contain_a_credential_word_keep_their_value(key: str):
    """``input_tokens``, ``session.id``, ``author``: counters and ids, not credentials."""
    assert not is_sensitive_key(key)
    assert REDACT.value(key, "gpt-4o") == "gpt-4o"
    assert REDACT.value(key, 1200) == 1200


def test_nested_values_are_scrubbed_by_name_and_by_shape():
    """Dicts and lists inside a mapping (audit details) are walked."""
    out = REDACT.mapping(
        {
            "request": {
                "headers": {"Authorization": "Bearer abc"},
                "note": "sk-ant-api03-" + "x" * 20,
            }
        }
    )
    assert out == {
        "request": {
            "headers": {"Authorization": "[REDACTED:authorization]"},
            "note": "[REDACTED:anthropic_key]",
        }
    }


_FILLER = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(before=_FILLER, after=_FILLER, index=st.integers(0, len(SECRETS) - 1))
def test_a_secret_embedded_in_random_text_is_always_removed(before: str, after: str, index: int):
    """Whatever text surrounds it (separated by a space, as a secret in prose is), it goes."""
    _, text, secret = SECRETS[index]
    assert secret not in REDACT(f"{before} {text} {after}")


_HEX = "0123456789abcdef"


@settings(max_examples=200, deadline=None)
@given(
    trace=st.integers(1, 2**128 - 1),
    span=st.integers(1, 2**64 - 1),
    sha=st.text(alphabet=_HEX, min_size=40, max_size=40),
    uuid=st.uuids(),
    version=st.tuples(st.integers(0, 99), st.integers(0, 99), st.integers(0, 999)),
    model=st.sampled_from(["gpt-4o", "claude-3-5-sonnet-20241022", "gemini-1.5-pro-002"]),
)
def test_generated_ids_versions_and_model_names_pass_unchanged(
    trace: int, span: int, sha: str, uuid: object, version: tuple[int, int, int], model: str
):
    """Random trace ids, span ids, git SHAs, UUIDs and version strings in a sentence: unaltered."""
    text = (
        f"trace {trace:032x} span {span:016x} at {sha[:12]} / {sha} id {uuid} "
        f"model={model} code=v{version[0]}.{version[1]}.{version[2]} hash sha256:{sha}{sha[:24]}"
    )
    assert REDACT(text) == text


def _span_with_event(events_as_tuple: bool) -> object:
    """A finished SDK span whose event carries a secret; or the same as a hand-built
    ReadableSpan holding its events in a plain tuple (what other exporters' tests make)."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

    span = TracerProvider().get_tracer("t").start_span("op", attributes={"db.password": "hunter22"})
    span.add_event("retry", {"detail": "postgres://admin:s3cr3tPass@10.0.0.5/db"})
    span.end()
    if not events_as_tuple:
        return span
    return ReadableSpan(
        name=span.name,
        context=span.get_span_context(),
        attributes=dict(span.attributes or {}),
        events=tuple(span.events),
        resource=span.resource,
    )


@pytest.mark.parametrize("events_as_tuple", [False, True])
def test_the_scrubber_reaches_event_attributes_whatever_holds_the_events(events_as_tuple: bool):
    """A secret in an event and under a credential key seen for the first time is scrubbed,
    whether the span keeps its events in the SDK's bounded list or in a plain tuple."""
    from blameset.instrument._records import Scrubber, span_to_dict

    record = span_to_dict(Scrubber(Redactor()).span(_span_with_event(events_as_tuple)))  # type: ignore[arg-type]
    text = repr(record)
    assert "s3cr3tPass" not in text and "hunter22" not in text
    assert record["events"][0]["name"] == "retry"


def test_a_scrubber_that_passed_clean_spans_still_hides_what_comes_later():
    """After clean spans, a secret under a known plain key and a string under a credential key
    that carried only numbers before are scrubbed; the clean span still passes unchanged."""
    from opentelemetry.sdk.trace import TracerProvider

    from blameset.instrument._records import Scrubber

    tracer = TracerProvider().get_tracer("t")
    scrubber = Scrubber(Redactor())

    def scrubbed(attributes: dict[str, object]) -> dict[str, object]:
        span = tracer.start_span("op", attributes=attributes)  # type: ignore[arg-type]
        span.end()
        return dict(scrubber.span(span).attributes or {})  # type: ignore[arg-type]

    clean = {"blameset.tenant.id": "acme", "app.note": "all good", "api_key": 7, "took_ms": 1.5}
    for _ in range(3):
        assert scrubbed(clean) == clean
    _, text, secret = SECRETS[0]
    assert secret not in repr(scrubbed({**clean, "app.note": text}))
    assert str(scrubbed({**clean, "api_key": "plain words only"})["api_key"]).startswith(
        "[REDACTED:"
    )
    assert scrubbed(clean) == clean


def test_a_redactor_first_used_by_several_threads_at_once_scrubs_in_each():
    """The span and the log exporter threads may be the first to scrub, together: each gets the
    text scrubbed, none an error (the rules were published before the rest was compiled)."""
    import sys
    import threading

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    failed: list[BaseException] = []
    try:
        for _ in range(100):
            redactor = Redactor()
            gate = threading.Barrier(4)

            def scrub(r: Redactor = redactor, g: threading.Barrier = gate) -> None:
                g.wait()
                try:
                    assert "[REDACTED" in r("password=hunter2hunter2 " + "x" * 300)
                except BaseException as exc:  # reported below, with the thread's error
                    failed.append(exc)

            threads = [threading.Thread(target=scrub) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        sys.setswitchinterval(previous)
    assert failed == []


_KEYS = ["app.note", "blameset.tenant.id", "api_key", "authorization", "took_ms", "user.email"]
_VALUES = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=False, width=32),
    st.booleans(),
    st.sampled_from(["acme", "all good", "plain words", SECRETS[0][1], "ops@example.com"]),
    st.tuples(st.sampled_from(["a", SECRETS[1][1]])),
)
_SPANS = st.lists(
    st.tuples(
        st.sampled_from(["op", "GET /chat", f"op {SECRETS[2][1]}"]),
        st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=5),
        st.one_of(st.none(), st.sampled_from(["", "timeout", SECRETS[3][1]])),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(_SPANS)
def test_the_native_check_of_a_clean_span_agrees_with_the_python_scrubber(
    specs: list[tuple[str, dict[str, object], str | None, bool]],
):
    """Spans of every shape (secrets in names, values, status messages, events; credential keys
    holding numbers or text), each scrubbed twice: with the native check the scrubber hands the
    exporter exactly what the Python scrubber alone does."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Status, StatusCode

    from blameset.instrument import _records

    if _records._fast_clean is None:
        pytest.skip("built without the native check")
    tracer = TracerProvider().get_tracer("t")
    native, python = _records.Scrubber(Redactor()), _records.Scrubber(Redactor())
    for name, attributes, message, event in specs:
        span = tracer.start_span(name, attributes=attributes)  # type: ignore[arg-type]
        if message is not None:
            span.set_status(Status(StatusCode.ERROR, message))
        if event:
            span.add_event("retry", {"detail": SECRETS[4][1]})
        span.end()
        for _ in range(2):
            got = _records.span_to_dict(native.span(span))  # type: ignore[arg-type]
            check, _records._fast_clean = _records._fast_clean, None
            try:
                want = _records.span_to_dict(python.span(span))  # type: ignore[arg-type]
            finally:
                _records._fast_clean = check
            assert got == want


def test_the_native_check_answers_for_a_clean_span_once_its_parts_are_known():
    """The first clean spans are judged in Python; the next of their shape is passed by the
    native check (else it would be dead code) and comes back unchanged; one with a new string is
    not."""
    from opentelemetry.sdk.trace import TracerProvider

    from blameset.instrument import _records

    if _records._fast_clean is None:
        pytest.skip("built without the native check")
    tracer = TracerProvider().get_tracer("t")
    scrubber = _records.Scrubber(Redactor())

    def ended(attributes: dict[str, object]) -> object:
        span = tracer.start_span("op", attributes=attributes)  # type: ignore[arg-type]
        span.end()
        return span

    clean = {"blameset.tenant.id": "acme", "took_ms": 1.5, "retries": 0, "cached": False}
    for _ in range(2):  # a string's key is judged on first sight, the key and text known after
        first = ended(clean)
        assert scrubber.span(first) is first  # type: ignore[arg-type]
    cached = scrubber._resource
    assert cached is not None

    def native(span: object) -> bool:
        assert _records._fast_clean is not None
        redact = scrubber.redact
        return _records._fast_clean(
            span, scrubber._plain_keys, scrubber._clean, redact.seen, cached[0]
        )

    second = ended({**clean, "took_ms": 2.5})
    assert native(second)
    assert scrubber.span(second) is second  # type: ignore[arg-type]
    assert not native(ended({**clean, "blameset.tenant.id": "globex"}))
