"""`linohost init --admin-password-file`: the hash (never the password) in secrets/, 0600."""
from linohost.keeper import access
from linohost.model.host import Host


def test_init_stores_the_admin_password_hash(bare, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    bare("init", "--admin-password-file", str(pw))
    stored = access.password_file(Host.open(bare.root))
    assert stored.stat().st_mode & 0o777 == 0o600
    text = stored.read_text()
    assert "correct horse" not in text and access.check_password(text, "correct horse")
    assert not access.check_password(text, "wrong")


def test_empty_password_file_is_refused(bare, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("\n")
    r = bare("init", "--admin-password-file", str(pw), check=False)
    assert r.returncode != 0 and "empty" in r.stderr
    assert not access.password_file(Host.open(bare.root)).exists()
