"""The htpasswd code the accounts feature builds on: salted bcrypt, strict names."""

import bcrypt
import pytest

from provision import htpasswd


def test_salted_bcrypt_and_the_file_round_trip():
    hashed = htpasswd.hash_password("pw-one")
    assert hashed.startswith("$2b$12$") and bcrypt.checkpw(b"pw-one", hashed.encode())
    assert htpasswd.hash_password("pw-one", rounds=4) != htpasswd.hash_password("pw-one", rounds=4)  # salted
    text = htpasswd.render({"demouser": hashed, "other": "$2b$12$x"})
    assert text == f"demouser:{hashed}\nother:$2b$12$x\n"
    assert htpasswd.parse(text + "# comment\nnot-an-entry\n") == {"demouser": hashed, "other": "$2b$12$x"}


@pytest.mark.parametrize("name", ["", "a:b", "a b", "tab\tname", "nl\n", "bell\x07"])
def test_bad_names_refused(name):
    with pytest.raises(htpasswd.AccountError):
        htpasswd.check_name(name)


def test_empty_and_overlong_passwords_refused():
    with pytest.raises(htpasswd.AccountError, match="empty"):
        htpasswd.check_password("")
    with pytest.raises(htpasswd.AccountError, match="72 bytes"):
        htpasswd.check_password("x" * 73)


def test_verify_only_matches_bcrypt_of_the_same_password():
    hashed = htpasswd.hash_password("right", rounds=4)
    assert htpasswd.verify("right", hashed) and not htpasswd.verify("wrong", hashed)
    assert not htpasswd.verify("right", "{SHA}abc=")  # weak schemes get re-set as bcrypt


def test_control_characters_in_passwords_refused():
    with pytest.raises(htpasswd.AccountError, match="control character"):
        htpasswd.check_password("pw\n")
