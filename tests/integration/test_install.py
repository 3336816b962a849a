"""`make install` gives a usable library: moor.h, libmoor.a, libmoor.so and
libmoor.pc work for a program built with pkg-config, and only the public
moor_* symbols are visible. It also installs the systemd unit and moor(1),
honouring DESTDIR."""
import os
import re
import subprocess
from pathlib import Path
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOT_PATH = Path(ROOT)

PROGRAM = textwrap.dedent("""
    #include <moor.h>
    #include <stdio.h>
    #include <string.h>
    int main(void)
    {
        char b[8192];
        long n = moor_mem_json(b, sizeof b);
        if (n <= 0 || !strstr(b, "\\"live_bytes\\""))
            return 1;
        printf("%s %lld\\n", moor_version(), (long long)moor_mem_live_bytes());
        return moor_mem_live_bytes() != 0;
    }
""")


def header_version():
    """MOOR_VERSION_MAJOR.MINOR.PATCH as include/moor.h states them."""
    text = (ROOT_PATH / "include" / "moor.h").read_text()
    part = {k: re.search(rf"#define MOOR_VERSION_{k} (\d+)", text).group(1)
            for k in ("MAJOR", "MINOR", "PATCH")}
    return f"{part['MAJOR']}.{part['MINOR']}.{part['PATCH']}"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          timeout=300, **kw)


def test_install_and_link(tmp_path):
    prefix = tmp_path / "prefix"
    run(["make", "-s", "install", f"PREFIX={prefix}"], cwd=ROOT)
    for f in ["bin/moor", "include/moor.h", "lib/libmoor.a", "lib/libmoor.so",
              "lib/pkgconfig/libmoor.pc", "lib/systemd/system/moor.service",
              "share/man/man1/moor.1"]:
        assert (prefix / f).exists(), f
    # libsystemd (sd_notify) is the moor binary's, not the library's.
    assert "libsystemd.so" in run(["readelf", "-d",
                                   str(prefix / "bin/moor")]).stdout
    assert "libsystemd" not in run(["readelf", "-d",
                                    str(prefix / "lib/libmoor.so")]).stdout
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib/pkgconfig"))
    cflags = run(["pkg-config", "--cflags", "libmoor"], env=env).stdout.split()
    libs = run(["pkg-config", "--libs", "libmoor"], env=env).stdout.split()
    static_libs = run(["pkg-config", "--libs", "--static", "libmoor"],
                      env=env).stdout.split()
    src = tmp_path / "use.c"
    src.write_text(PROGRAM)

    shared = tmp_path / "use_shared"
    run(["cc", str(src), "-o", str(shared)] + cflags + libs)
    out = run([str(shared)], env=dict(env, LD_LIBRARY_PATH=str(prefix / "lib")))
    assert out.stdout.split() == [header_version(), "0"]

    static = tmp_path / "use_static"
    run(["cc", str(src), "-o", str(static), "-static-libgcc"] + cflags
        + [str(prefix / "lib/libmoor.a")]
        + [x for x in static_libs if x != "-lmoor"])
    assert run([str(static)]).stdout.split() == [header_version(), "0"]

    # Internal names are local in both libraries: a user's conn_close or
    # mem_alloc cannot clash with ours.
    dyn = run(["nm", "-D", "--defined-only", str(prefix / "lib/libmoor.so")]).stdout
    exported = {l.split()[-1] for l in dyn.splitlines() if " T " in l}
    # Exactly the functions moor.h declares with MOOR_API.
    header = (ROOT_PATH / "include" / "moor.h").read_text()
    # (The _init() macros are not functions, their _init_() are; the
    # name in a declaration is the first moor_ name followed by "(".)
    declared = set(re.findall(r"\bMOOR_API\b[^;]*?\b(moor_[a-z_]+)\s*\(",
                              header))
    assert "moor_version" in declared and "moor_ws_send" in declared
    assert exported == declared
    arc = run(["nm", "-g", "--defined-only", str(prefix / "lib/libmoor.a")]).stdout
    globals_ = {l.split()[-1] for l in arc.splitlines() if " T " in l}
    assert globals_ == exported


def test_install_destdir_unit_and_man(tmp_path):
    """DESTDIR stages the files, PREFIX is where they will run from: the
    unit starts PREFIX/bin/moor, not the staging path; moor(1) is
    docs/moor.1; make uninstall takes both away again."""
    dest = tmp_path / "stage"
    run(["make", "-s", "install", "PREFIX=/usr", f"DESTDIR={dest}"], cwd=ROOT)
    unit = dest / "usr/lib/systemd/system/moor.service"
    man = dest / "usr/share/man/man1/moor.1"
    assert "ExecStart=/usr/bin/moor serve $MOOR_ARGS\n" in unit.read_text()
    assert str(dest) not in unit.read_text()
    assert man.read_bytes() == (ROOT_PATH / "docs/moor.1").read_bytes()
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    run(["make", "-s", "uninstall", "PREFIX=/usr", f"DESTDIR={dest}"],
        cwd=ROOT)
    assert not unit.exists() and not man.exists()
    assert not (dest / "usr/bin/moor").exists()
