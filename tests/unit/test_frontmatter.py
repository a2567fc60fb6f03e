"""README.md front matter → SpaceConfig: every key of reference §1, unknown keys, broken YAML, invalid values."""

from __future__ import annotations

from typing import Any

import pytest

from builder.frontmatter import parse_readme, validate_readme
from core.config import SpaceConfig
from core.errors import ConfigError
from core.stages import Sdk


def readme(*lines: str) -> str:
    return "---\n" + "\n".join(lines) + "\n---\n\n# My Space\n"


VALID = [
    ("title", "title: Hello world", "title", "Hello world"),
    ("title-yes-stays-text", "title: yes", "title", "yes"),
    ("emoji", "emoji: 🚀", "emoji", "🚀"),
    ("emoji-with-selector", "emoji: ❤️", "emoji", "❤️"),
    ("emoji-flag", "emoji: 🇫🇷", "emoji", "🇫🇷"),
    ("colorFrom", "colorFrom: red", "colorFrom", "red"),
    ("colorTo", "colorTo: gray", "colorTo", "gray"),
    ("sdk-gradio", "sdk: gradio", "sdk", Sdk.GRADIO),
    ("sdk-streamlit", "sdk: streamlit", "sdk", Sdk.STREAMLIT),
    ("sdk-static", "sdk: static", "sdk", Sdk.STATIC),
    ("sdk-docker", "sdk: docker", "sdk", Sdk.DOCKER),
    ("python_version-float-kept-as-written", "python_version: 3.10", "python_version", "3.10"),
    ("python_version-patch", 'python_version: "3.11.7"', "python_version", "3.11.7"),
    ("sdk_version-float", "sdk_version: 4.0", "sdk_version", "4.0"),
    ("sdk_version-semver", "sdk_version: 5.9.1", "sdk_version", "5.9.1"),
    ("suggested_hardware", "suggested_hardware: a10g-small", "suggested_hardware", "a10g-small"),
    ("suggested_hardware-zero", "suggested_hardware: zero-a10g", "suggested_hardware", "zero-a10g"),
    ("suggested_storage", "suggested_storage: small", "suggested_storage", "small"),
    ("app_file", "app_file: src/main.py", "app_file", "src/main.py"),
    ("app_build_command", "app_build_command: npm run build", "app_build_command", "npm run build"),
    ("app_port", "app_port: 8080", "app_port", 8080),
    ("base_path", "base_path: /docs", "base_path", "/docs"),
    ("fullWidth", "fullWidth: true", "fullWidth", True),
    ("header", "header: mini", "header", "mini"),
    ("short_description", "short_description: A demo", "short_description", "A demo"),
    ("models", "models:\n  - gpt2\n  - openai/whisper", "models", ("gpt2", "openai/whisper")),
    ("datasets", "datasets: [squad]", "datasets", ("squad",)),
    ("tags", "tags: [a, b]", "tags", ("a", "b")),
    ("thumbnail", "thumbnail: https://x.test/t.png", "thumbnail", "https://x.test/t.png"),
    ("pinned", "pinned: false", "pinned", False),
    ("hf_oauth", "hf_oauth: true", "hf_oauth", True),
    ("hf_oauth_scopes", "hf_oauth_scopes: [email, read-repos]", "hf_oauth_scopes", ("email", "read-repos")),
    ("hf_oauth_expiration_minutes", "hf_oauth_expiration_minutes: 60", "hf_oauth_expiration_minutes", 60),
    ("hf_oauth_authorized_org-str", "hf_oauth_authorized_org: acme", "hf_oauth_authorized_org", ("acme",)),
    ("hf_oauth_authorized_org-list", "hf_oauth_authorized_org: [a, b]", "hf_oauth_authorized_org", ("a", "b")),
    ("disable_embedding", "disable_embedding: true", "disable_embedding", True),
    ("startup_duration_timeout", "startup_duration_timeout: 1h", "startup_duration_timeout", "1h"),
    ("custom_headers", ("custom_headers:\n  cross-origin-embedder-policy: require-corp\n"
     "  cross-origin-opener-policy: same-origin\n  cross-origin-resource-policy: cross-origin"),
     "custom_headers", (("cross-origin-embedder-policy", "require-corp"),
                        ("cross-origin-opener-policy", "same-origin"),
                        ("cross-origin-resource-policy", "cross-origin"))),
    ("preload_from_hub", "preload_from_hub:\n  - coqui/XTTS-v1\n  - gpt2 config.json abc", "preload_from_hub",
     ("coqui/XTTS-v1", "gpt2 config.json abc")),
    ("license", "license: apache-2.0", "license", "apache-2.0"),
    ("duplicated_from", "duplicated_from: a/b", "duplicated_from", "a/b"),
    ("null-is-default", "app_port: null", "app_port", None),
]


@pytest.mark.parametrize(("yaml_text", "key", "expected"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_each_key_parses(yaml_text: str, key: str, expected: Any) -> None:
    config = parse_readme(readme(yaml_text))
    assert getattr(config, key) == expected
    assert config.extra == ()


def test_every_config_key_has_a_valid_case() -> None:
    covered = {v[2] for v in VALID}
    assert covered == set(SpaceConfig.__dataclass_fields__) - {"extra"}


NO_FRONT_MATTER = [
    ("none", None),
    ("empty", ""),
    ("plain-markdown", "# Title\n\nSome text\n"),
    ("empty-block", "---\n---\n# x\n"),
    ("comment-only", "---\n# nothing\n---\n"),
]


@pytest.mark.parametrize("text", [t for _, t in NO_FRONT_MATTER], ids=[i for i, _ in NO_FRONT_MATTER])
def test_no_front_matter_is_default(text: str | None) -> None:
    assert parse_readme(text) == SpaceConfig()


def test_bom_and_crlf() -> None:
    assert parse_readme("\ufeff---\r\nsdk: static\r\n---\r\n").sdk is Sdk.STATIC


def test_unknown_keys_are_kept_json_safe() -> None:
    config = parse_readme(readme("sdk: gradio", "foo: 2024-01-01", "bar: [1, {a: b}]"))
    assert config.sdk is Sdk.GRADIO
    assert dict(config.extra) == {"foo": "2024-01-01", "bar": [1, {"a": "b"}]}


# (id, front matter lines, key named in the error, README line of the culprit, words in the message)
INVALID = [
    ("bad-sdk", ["title: x", "sdk: gradoi"], "sdk", 3, "gradoi"),
    ("sdk-upper", ["sdk: Gradio"], "sdk", 2, "one of"),
    ("bad-color", ["colorFrom: teal"], "colorFrom", 2, "teal"),
    ("emoji-letters", ["emoji: abc"], "emoji", 2, "emoji"),
    ("python-2", ["python_version: 2.7"], "python_version", 2, "3.x"),
    ("python-garbage", ["python_version: latest"], "python_version", 2, "3.x"),
    ("sdk_version-garbage", ["sdk_version: newest!"], "sdk_version", 2, "version"),
    ("hardware", ["suggested_hardware: h100"], "suggested_hardware", 2, "h100"),
    ("storage", ["suggested_storage: huge"], "suggested_storage", 2, "huge"),
    ("app_file-absolute", ["app_file: /etc/passwd"], "app_file", 2, "relative"),
    ("app_file-dotdot", ["app_file: ../x.py"], "app_file", 2, "relative"),
    ("app_port-high", ["sdk: docker", "app_port: 70000"], "app_port", 3, "1..65535"),
    ("app_port-zero", ["app_port: 0"], "app_port", 2, "1..65535"),
    ("app_port-text", ["app_port: http"], "app_port", 2, "integer"),
    ("app_port-bool", ["app_port: true"], "app_port", 2, "integer"),
    ("base_path", ["base_path: docs"], "base_path", 2, "'/'"),
    ("header", ["header: big"], "header", 2, "mini"),
    ("fullWidth-text", ["fullWidth: wide"], "fullWidth", 2, "true or false"),
    ("pinned-int", ["pinned: 1"], "pinned", 2, "true or false"),
    ("tags-string", ["tags: a"], "tags", 2, "list"),
    ("models-mapping", ["models:", "  a: b"], "models", 2, "list"),
    ("title-list", ["title: [a]"], "title", 2, "string"),
    ("duration", ["startup_duration_timeout: soon"], "startup_duration_timeout", 2, "duration"),
    ("scope", ["hf_oauth_scopes:", "  - email", "  - root"], "hf_oauth_scopes", 4, "root"),
    ("oauth-minutes", ["hf_oauth_expiration_minutes: 50000"], "hf_oauth_expiration_minutes", 2, "43200"),
    ("orgs-mapping", ["hf_oauth_authorized_org: {a: b}"], "hf_oauth_authorized_org", 2, "string"),
    ("header-not-allowed", ["custom_headers:", "  x-frame-options: deny"], "custom_headers", 3,
     "not allowed"),
    ("header-upper-name", ["custom_headers:", "  Cross-Origin-Opener-Policy: same-origin"], "custom_headers", 3,
     "lower case"),
    ("header-upper-value", ["custom_headers:", "  cross-origin-opener-policy: Same-Origin"], "custom_headers",
     3, "lower case"),
    ("headers-list", ["custom_headers: [a]"], "custom_headers", 2, "mapping"),
]


@pytest.mark.parametrize(("lines", "key", "line", "words"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_value_names_key_and_line(lines: list[str], key: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_readme(readme(*lines))
    assert (info.value.key, info.value.line) == (key, line)
    assert words in info.value.message
    assert f"key '{key}'" in info.value.message and f"line {line}" in info.value.message


BROKEN = [
    ("unclosed-flow", ["title: x", "tags: [a, b"], 3),
    ("bad-indent", ["title: x", "sdk: gradio", "  app_file: a.py"], 4),
    ("tab", ["title: x", "\tsdk: gradio"], 3),
    ("unclosed-quote", ["title: x", 'emoji: "🚀'], 3),
    ("not-a-mapping", ["- a", "- b"], 2),
    ("scalar", ["just text"], 2),
]


@pytest.mark.parametrize(("lines", "line"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_yaml_names_line(lines: list[str], line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_readme(readme(*lines))
    assert info.value.line == line
    assert f"line {line}" in info.value.message


def test_unclosed_front_matter() -> None:
    with pytest.raises(ConfigError, match="never closed") as info:
        parse_readme("---\ntitle: x\n# no end\n")
    assert info.value.line == 1


def test_first_error_wins_and_validate_lists_all() -> None:
    text = readme("sdk: nope", "title: ok", "colorTo: teal")
    with pytest.raises(ConfigError) as info:
        parse_readme(text)
    assert info.value.key == "sdk"
    errors, warnings = validate_readme(text)
    assert len(errors) == 2 and "'sdk'" in errors[0] and "'colorTo'" in errors[1]
    assert warnings == []


WARNINGS = [
    ("unknown-key", ["sdk: gradio", "foo: 1"], "unknown key 'foo'"),
    ("duplicate-key", ["sdk: gradio", "sdk: static"], "repeats line 2"),
    ("storage-ignored", ["suggested_storage: small"], "ignored"),
    ("app_port-not-docker", ["sdk: gradio", "app_port: 8000"], "docker"),
]


@pytest.mark.parametrize(("lines", "words"), [c[1:] for c in WARNINGS], ids=[c[0] for c in WARNINGS])
def test_warnings(lines: list[str], words: str) -> None:
    errors, warnings = validate_readme(readme(*lines))
    assert errors == []
    assert any(words in w for w in warnings), warnings


def test_validate_broken_yaml() -> None:
    errors, warnings = validate_readme(readme("tags: [a"))
    assert len(errors) == 1 and "line 2" in errors[0] and warnings == []


def test_duplicate_key_last_wins() -> None:
    assert parse_readme(readme("sdk: gradio", "sdk: static")).sdk is Sdk.STATIC
