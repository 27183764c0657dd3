"""The htpasswd code the accounts feature builds on: salted bcrypt, strict names."""

import bcrypt
import pytest

from provision import htpasswd


def test_set_user_adds_then_updates_with_salted_bcrypt():
    text, action = htpasswd.set_user("", "demouser", "pw-one")
    assert action == "added"
    name, hashed = text.strip().split(":", 1)
    assert name == "demouser" and hashed.startswith("$2b$12$")
    assert bcrypt.checkpw(b"pw-one", hashed.encode())
    again, _ = htpasswd.set_user("", "demouser", "pw-one")
    assert again != text  # salted: the same password never gives the same line
    text2, action = htpasswd.set_user(text + "other:$2b$12$x\n", "demouser", "pw-two")
    assert action == "updated"
    entries = htpasswd.parse(text2)
    assert list(entries) == ["demouser", "other"]
    assert bcrypt.checkpw(b"pw-two", entries["demouser"].encode())


@pytest.mark.parametrize("name", ["", "a:b", "a b", "tab\tname", "nl\n", "bell\x07"])
def test_bad_names_refused(name):
    with pytest.raises(htpasswd.AccountError):
        htpasswd.set_user("", name, "pw")


def test_empty_and_overlong_passwords_refused():
    with pytest.raises(htpasswd.AccountError, match="empty"):
        htpasswd.set_user("", "u", "")
    with pytest.raises(htpasswd.AccountError, match="72 bytes"):
        htpasswd.set_user("", "u", "x" * 73)


def test_verify_only_matches_bcrypt_of_the_same_password():
    hashed = htpasswd.hash_password("right", rounds=4)
    assert htpasswd.verify("right", hashed) and not htpasswd.verify("wrong", hashed)
    assert not htpasswd.verify("right", "{SHA}abc=")  # weak schemes get re-set as bcrypt


def test_control_characters_in_passwords_refused():
    with pytest.raises(htpasswd.AccountError, match="control character"):
        htpasswd.check_password("pw\n")
