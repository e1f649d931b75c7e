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
