"""How ``etcd://`` store URLs are read, and that their passwords never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from distcron.errors import ConfigError
from distcron.store import open_store
from distcron.store.etcd import EtcdStore
from distcron.store.etcd_url import Endpoint, EtcdUrl, parse_etcd_url, redact_url

SECRET = "s3cr3t-pw"


def test_a_url_names_every_endpoint_and_a_prefix() -> None:
    parsed = parse_etcd_url("etcd://10.0.0.1:2379,etcd-2.example:12379,[::1]:2380/distcron")
    assert parsed == EtcdUrl(
        (Endpoint("10.0.0.1", 2379), Endpoint("etcd-2.example", 12379), Endpoint("::1", 2380)),
        prefix="distcron/",
    )
    assert str(parsed.endpoints[2]) == "[::1]:2380"
    assert parsed.endpoints[2].base_url(tls=True) == "https://[::1]:2380"


def test_the_port_defaults_to_2379_and_no_path_means_no_prefix() -> None:
    for url in ("etcd://localhost", "etcd://localhost/"):
        assert parse_etcd_url(url) == EtcdUrl((Endpoint("localhost", 2379),), prefix="")


def test_a_prefix_is_percent_decoded_and_ends_with_a_slash() -> None:
    assert parse_etcd_url("etcd://h:1/team%40a/cron/").prefix == "team@a/cron/"
    assert parse_etcd_url("etcd://h:1/team%2Fa").prefix == "team/a/"


def test_user_and_password_are_read_and_percent_decoded() -> None:
    parsed = parse_etcd_url("etcd://cron%40ops:p%40ss%3Aword@h1:2379,h2:2379/p")
    assert (parsed.username, parsed.password) == ("cron@ops", "p@ss:word")
    assert [str(e) for e in parsed.endpoints] == ["h1:2379", "h2:2379"]


def test_tls_options_and_timeouts_are_read_from_the_query() -> None:
    parsed = parse_etcd_url(
        "etcds://h:2379/p?cacert=/etc/ca.pem&cert=/etc/c.pem&key=/etc/k.pem"
        "&timeout=500ms&max_txn_ops=1000"
    )
    assert parsed.tls
    assert (parsed.cacert, parsed.cert, parsed.key) == (
        Path("/etc/ca.pem"),
        Path("/etc/c.pem"),
        Path("/etc/k.pem"),
    )
    assert (parsed.timeout, parsed.max_txn_ops) == (0.5, 1000)
    assert parse_etcd_url("etcds://h:2379").cacert is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://h:2379", "expected etcd://"),
        ("etcd://", "bad endpoint ''"),
        ("etcd://h:2379,,h2:2379", "bad endpoint ''"),
        ("etcd://h:notaport", "bad endpoint 'h:notaport'"),
        ("etcd://h:70000", "bad endpoint 'h:70000'"),
        ("etcd://h/p#frag", "%23"),
        ("etcd://root@h:2379", "user and a password"),
        (f"etcd://:{SECRET}@h:2379", "user and a password"),
        (f"etcd://root:{SECRET}@h:2379?cacert=/ca.pem", "need etcds://"),
        (f"etcds://root:{SECRET}@h:2379?cert=/c.pem", "cert and key together"),
        (f"etcd://root:{SECRET}@h:2379?timeout=soon", "bad duration"),
        (f"etcd://root:{SECRET}@h:2379?timeout=0s", "must be positive"),
        (f"etcd://root:{SECRET}@h:2379?max_txn_ops=0", "must be positive"),
        (f"etcd://root:{SECRET}@h:2379?timeout=1s&timeout=2s", "given twice"),
        (f"etcd://root:{SECRET}@h:2379?password=x", "unknown option 'password'"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_the_url_without_its_password(
    url: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        open_store(url) if url.startswith("etcd") else parse_etcd_url(url)
    message = str(raised.value)
    assert reason in message
    assert repr(redact_url(url)) in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"etcd://root:{SECRET}@h:1/p?timeout=1s", "etcd://root:***@h:1/p?timeout=1s"),
        (f"etcd://root:{SECRET}/x@h:1/p", "etcd://root:***@h:1/p"),
        ("etcd://root@h:1", "etcd://root@h:1"),
        ("etcd://h:1/p", "etcd://h:1/p"),
        (f"etcd://root:{SECRET}@", "etcd://root:***@"),
    ],
)
def test_redacting_hides_the_password_even_in_a_malformed_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_neither_the_parsed_url_nor_the_store_shows_the_password() -> None:
    store = open_store(f"etcds://root:{SECRET}@h1:2379,h2:2379/distcron")
    assert isinstance(store, EtcdStore)
    assert repr(store) == "EtcdStore('etcds://root:***@h1:2379,h2:2379/distcron/')"
    assert SECRET not in repr(store.url)
    assert store.url.password == SECRET
