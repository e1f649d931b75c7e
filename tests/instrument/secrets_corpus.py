# ruff: noqa: E501 -- the secrets are quoted whole, as they leak
"""Secrets in the shapes services leak them, and ids that must survive scrubbing untouched.

Each SECRETS entry is (name, text as it appears, the part that must never be exported). The
values are made up but have the real formats (lengths, prefixes, checksums).
"""

from __future__ import annotations

SECRETS: list[tuple[str, str, str]] = [
    ("openai", "key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"),
    ("openai_svc", "sk-svcacct-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1", "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1"),
    (
        "openai_legacy",
        "OPENAI_API_KEY=sk-4f9aQ2mZ8bX1cV7nL3kJ6hG5dS0pW2eR",
        "4f9aQ2mZ8bX1cV7nL3kJ6hG5dS0pW2eR",
    ),
    (
        "anthropic",
        "x-api-key: sk-ant-api03-Qw3Er4Ty5Ui6Op7As8Df9Gh0JkLzXcVb",
        "Qw3Er4Ty5Ui6Op7As8Df9Gh0JkLzXcVb",
    ),
    (
        "google",
        "url ?key=AIzaSyD3fG4hJ5kL6zX7cV8bN9mQ0wE1rT2yU3i",
        "AIzaSyD3fG4hJ5kL6zX7cV8bN9mQ0wE1rT2yU3i",
    ),
    (
        "google_oauth",
        "token ya29.a0AfH6SMBx9Kq2Lm3Np4Rs5Tu6Vw7Xy8Z",
        "a0AfH6SMBx9Kq2Lm3Np4Rs5Tu6Vw7Xy8Z",
    ),
    ("aws_access", "using AKIAIOSFODNN7EXAMPLQ for s3", "AKIAIOSFODNN7EXAMPLQ"),
    (
        "aws_secret_pair",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "aws_secret_json",
        '{"SecretAccessKey": "Je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"}',
        "Je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    ),
    (
        "azure_conn",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6==;EndpointSuffix=core.windows.net",
        "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6",
    ),
    (
        "azure_openai",
        "api-key: 3f2b8c9d4e5a6b7c8d9e0f1a2b3c4d5e",
        "3f2b8c9d4e5a6b7c8d9e0f1a2b3c4d5e",
    ),
    ("stripe", "charging with sk_live_51HqLyjWDarjtT1zdp7dcXYZ", "51HqLyjWDarjtT1zdp7dcXYZ"),
    (
        "stripe_webhook",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
    (
        "slack_bot",
        "xoxb-2048-1234567890-AbCdEfGhIjKlMnOpQrStUvWx",
        "1234567890-AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    (
        "slack_webhook",
        "POST https://hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/abcdEFGHijklMNOPqrstUVWX",
        "abcdEFGHijklMNOPqrstUVWX",
    ),
    (
        "github_classic",
        "git push with ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "16C7e42F292c6912E7710c838347Ae178B4a",
    ),
    (
        "github_fine",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    ),
    (
        "github_app",
        "ghs_aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2",
        "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2",
    ),
    ("gitlab", "CI uses glpat-xYz12AbC34dEf56GhI78jK", "xYz12AbC34dEf56GhI78jK"),
    (
        "npm",
        "//registry.npmjs.org/:_authToken=npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    ),
    (
        "pypi",
        "password = pypi-AgEIcHlwaS5vcmcCJDUxZmQ0YjA3LWE5ZTItNDk4Zi1hZjQ3LTg0ZmY0NzdkNmE0ZQ",
        "AgEIcHlwaS5vcmcCJDUxZmQ0YjA3LWE5ZTItNDk4Zi1hZjQ3",
    ),
    (
        "huggingface",
        "HF hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
        "AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
    ),
    (
        "jwt",
        "id eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsIm5hbWUiOiJCb2IifQ.dGhpcyBpcyBub3QgYSBzaWc",
        "eyJzdWIiOiI0MiIsIm5hbWUiOiJCb2IifQ",
    ),
    (
        "bearer_letters",
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyzABCDEF",
        "abcdefghijklmnopqrstuvwxyzABCDEF",
    ),
    ("bearer_plain", "sent Bearer QmFzZTY0VG9rZW5IZXJl9x", "QmFzZTY0VG9rZW5IZXJl9x"),
    ("basic_short", "Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("basic_bare", "curl -H 'Basic YWRtaW46aHVudGVyMg==' host", "YWRtaW46aHVudGVyMg=="),
    (
        "token_scheme",
        "Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
        "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
    ),
    ("url_creds", "postgres://admin:s3cr3tPass@10.0.0.5:5432/db", "s3cr3tPass"),
    ("url_creds_redis", "redis://default:Rd9xPw2Lq@cache.internal:6379/0", "Rd9xPw2Lq"),
    ("url_query", "GET /callback?state=ok&access_token=Zq8Wm3Np5Lk7Jh9G&x=1", "Zq8Wm3Np5Lk7Jh9G"),
    (
        "pem",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq9XhQ2pZ1l8lQd0mYwL5n3Gk\nU4kTnE8sXr2fJ0yHcB1vDqA==\n-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA7bq9XhQ2pZ1l8lQd0mYwL5n3Gk",
    ),
    (
        "pem_no_end",
        "key follows -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB\nAAAAMwAAAAtzc2gtZWQyNTUxOQ",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB",
    ),
    (
        "pem_json",
        '{"key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n"}',
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    ),
    ("card_spaces", "card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111"),
    ("card_plain", "pan=5500005555555559", "5500005555555559"),
    ("card_dashes", "amex 3782-822463-10005 on file", "3782-822463-10005"),
    ("password_prose", "password: letmein", "letmein"),
    ("password_json", '{"password": "correcthorse"}', "correcthorse"),
    ("password_repr", "{'db_passwd': 'Tr0ub4dor&3'}", "Tr0ub4dor&3"),
    ("passphrase", "PASSPHRASE=mellon", "mellon"),
    ("secret_kv", "client_secret=Gh7_kLp2-QxZ9", "Gh7_kLp2-QxZ9"),
    ("cookie", "Cookie: sessionid=8f7a6b5c4d3e2f1a0b9c8d7e", "8f7a6b5c4d3e2f1a0b9c8d7e"),
    ("credential_json", '{"credentials": "u:9Kd!pQ2w"}', "u:9Kd!pQ2w"),
    ("email", "reply to bob.smith+ops@example.co.uk today", "bob.smith+ops@example.co.uk"),
    ("email_end", "Contact alice@corp.example.", "alice@corp.example"),
    ("custom", "customer C-99812 complained", "C-99812"),
]

CUSTOM_PATTERNS = [r"\bC-\d{5}\b"]

SAFE: list[str] = [
    # trace and span ids, with and without labels
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "00f067aa0ba902b7",
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    # version sets and their ids
    "code=9fceb02d0ae598e95dc970b74767f19372d61af8;model=gpt-4o-2024-08-06;prompt=support@v7",
    "prompt=support@v7;retriever=bm25@2.1.0",
    "vs-3a7bd3e2360a3d29eea436fcfb7e44c735d117c4",
    "blameset.version_set_id=5d41402abc4b2a76b9719d911017c592",
    # git SHAs
    "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "commit 1a2b3c4 fixes it",
    # hashes
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "content_hash=d41d8cd98f00b204e9800998ecf8427e",
    # UUIDs
    "550e8400-e29b-41d4-a716-446655440000",
    "request 4111e8c2-1111-4111-8111-111111111111 done",
    "session.id=7c9e6679-7425-40de-944b-e07fc1f90ae7",
    # model names and versions
    "gpt-4o-2024-08-06",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-sonnet@20241022",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "gemini-1.5-pro-002",
    "meta-llama/Llama-3.1-70B-Instruct",
    "text-embedding-3-large",
    "o1-mini",
    "v1.2.3-rc.1+build.5",
    "blameset 0.4.0",
    # numbers that are not cards: timestamps, counters, token counts
    "1718000000000000000",
    "start_time_unix_nano=1730291055652000000",
    "input_tokens=1234 output_tokens=5678 max_tokens=4096",
    "gen_ai.usage.input_tokens: 1200",
    # words next to credential names that are not credentials
    "The bearer instrument",
    "Token: completion",
    "secret = consistency",
    "Basic instructions follow",
    "the author wrote: 3 chapters",
    "logo@2x.png",
    "https://api.openai.com/v1/chat/completions",
    "http://localhost:4318/v1/traces",
]
