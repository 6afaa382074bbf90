#!/usr/bin/env python3
"""Builds llmc's own benchmark files in bench/data/ (Python 3 standard library only).

Run from anywhere: `python3 bench/make_data.py`. Every output is deterministic:
running it again writes the same bytes.

  dpkg.log      synthetic Debian dpkg log (install/upgrade/remove sessions, triggers)
  records.json  synthetic GitHub-issue-like JSON array, 2-space indentation
  source.rs     concatenation of five of llmc's own source files, read with
                `git show SOURCE_COMMIT:<path>` so it does not drift with the tree
  seismic.bin   int16 little-endian samples: microseism + noise + damped
                sinusoid "events" (math.sin/exp; identical on any IEEE-754 libm
                that rounds correctly, which glibc does for these)
  object.o      ELF relocatable object compiled from bench/data/object.c (our own
                code) with `cc -O2 -g -fdebug-prefix-map=<dir>=. -c object.c` run
                in bench/data/. The bytes depend on the compiler: the committed
                object.o was made by gcc (Debian 12.2.0-14+deb12u1) 12.2.0,
                x86_64. If cc is missing the committed object.o is kept as is;
                pass --no-cc to keep it even when cc exists.

The package names and versions in dpkg.log are real Debian 12 ones (facts, used
as a plain list); all log lines, JSON records and samples are generated here.
"""
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")

SOURCE_COMMIT = "d729cc0a61dfdde37e0825842d2e3e0e11d92a93"
SOURCE_FILES = [
    "src/coder/range.rs",
    "src/container/mod.rs",
    "src/tokenizer/pretokenize.rs",
    "src/codec/encode.rs",
    "src/codec/decode.rs",
]
SOURCE_LIMIT = 100_000  # bytes; files are whole, the last one that fits ends it

PACKAGES = [
    "alsa-topology-conf:all 1.2.5.1-2", "apt:amd64 2.6.1",
    "at-spi2-core:amd64 2.46.0-5", "bash:amd64 5.2.15-2+b8",
    "binutils-aarch64-linux-gnu:amd64 2.40-2", "brotli:amd64 1.0.9-2+deb12u1",
    "build-essential:amd64 12.9", "ca-certificates:all 20230311+deb12u1",
    "coreutils:amd64 9.1-1", "cpp-aarch64-linux-gnu:amd64 4:12.2.0-3",
    "dash:amd64 0.5.12-2", "dbus-daemon:amd64 1.14.10-1~deb12u1",
    "dbus-user-session:amd64 1.14.10-1~deb12u1", "debconf:all 1.5.82",
    "diffutils:amd64 1:3.8-4", "dmsetup:amd64 2:1.02.185-2",
    "e2fsprogs:amd64 1.47.0-2", "file:amd64 1:5.44-3",
    "fontconfig-config:amd64 2.14.1-4", "freeglut3-dev:amd64 3.4.0-1",
    "gcc:amd64 4:12.2.0-3", "gcc-aarch64-linux-gnu:amd64 4:12.2.0-3",
    "gettext-base:amd64 0.21-12", "git:amd64 1:2.39.5-0+deb12u3",
    "gnupg-l10n:all 2.2.40-1.1+deb12u2", "gpg-agent:amd64 2.2.40-1.1+deb12u2",
    "gpgconf:amd64 2.2.40-1.1+deb12u2", "grep:amd64 3.8-5",
    "gtk-update-icon-cache:amd64 3.24.38-2~deb12u3", "hicolor-icon-theme:all 0.17-2",
    "init-system-helpers:all 1.65.2", "java-common:all 0.74",
    "krb5-locales:all 1.20.1-2+deb12u3", "libabsl20220623:amd64 20220623.1-1+deb12u2",
    "libalgorithm-diff-perl:all 1.201-1", "libaom3:amd64 3.6.0-1+deb12u1",
    "libapparmor1:amd64 3.0.8-3", "libargon2-1:amd64 0~20171227-0.3+deb12u1",
    "libasound2-data:all 1.2.8-1", "libatk-bridge2.0-0:amd64 2.46.0-5",
    "libatk1.0-0:amd64 2.46.0-5", "libatspi2.0-0:amd64 2.46.0-5",
    "libaudit1:amd64 1:3.0.9-1", "libavahi-common3:amd64 0.8-10+deb12u1",
    "libbinutils:amd64 2.40-2", "libboost-iostreams1.74.0:amd64 1.74.0+ds1-21",
    "libbpf1:amd64 1:1.1.2-0+deb12u1", "libbsd0:amd64 0.11.7-2",
    "libc-bin:amd64 2.36-9+deb12u14", "libc-l10n:all 2.36-9+deb12u14",
    "libc6-dev:amd64 2.36-9+deb12u14", "libcap-ng0:amd64 0.8.3-1+b3",
    "libcbor0.8:amd64 0.8.0-2+b1", "libclang-cpp14:amd64 1:14.0.6-12",
    "libcommons-io-java:all 2.11.0-2", "libcrypt-dev:amd64 1:4.4.33-2",
    "libctf-nobfd0:amd64 2.40-2", "libcurl3-gnutls:amd64 7.88.1-10+deb12u15",
    "libdatrie1:amd64 0.2.13-2+b1", "libdbus-1-3:amd64 1.14.10-1~deb12u1",
    "libdebconfclient0:amd64 0.270", "libdeflate0:amd64 1.14-1",
    "libdrm-amdgpu1:amd64 2.4.114-1+b1", "libdrm-nouveau2:amd64 2.4.114-1+b1",
    "libduktape207:amd64 2.7.0-2", "libegl-dev:amd64 1.6.0-1",
    "libelf1:amd64 0.188-2.1", "libevent-2.1-7:amd64 2.1.12-stable-8",
    "libexpat1-dev:amd64 2.5.0-1+deb12u1", "libfdisk1:amd64 2.38.1-5+deb12u3",
    "libfido2-1:amd64 1.12.0-2+b1", "libfontconfig1:amd64 2.14.1-4",
    "libfreetype-dev:amd64 2.12.1+dfsg-5+deb12u4", "libfuse3-3:amd64 3.14.0-4",
    "libgav1-1:amd64 0.18.0-1+b1", "libgcc-s1:amd64 12.2.0-14+deb12u1",
    "libgd3:amd64 2.3.3-9", "libgdk-pixbuf-2.0-0:amd64 2.42.10+dfsg-1+deb12u2",
    "libgeronimo-annotation-1.3-spec-java:all 1.3-1",
    "libgirepository-1.0-1:amd64 1.74.0-3", "libgl1:amd64 1.6.0-1",
    "libgl1-mesa-glx:amd64 22.3.6-1+deb12u1", "libgles1:amd64 1.6.0-1",
    "libglib2.0-bin:amd64 2.74.6-2+deb12u8", "libglu1-mesa-dev:amd64 9.0.2-1.1",
    "libglvnd-core-dev:amd64 1.6.0-1", "libglx-dev:amd64 1.6.0-1",
    "libgmp-dev:amd64 2:6.2.1+dfsg1-1.1", "libgnutls-dane0:amd64 3.7.9-2+deb12u6",
    "libgnutls30:amd64 3.7.9-2+deb12u6", "libgpg-error-dev:amd64 1.46-1",
    "libgprofng0:amd64 2.40-2", "libgstreamer1.0-0:amd64 1.22.0-2+deb12u1",
    "libgtk2.0-common:all 2.24.33-2+deb12u1", "libharfbuzz0b:amd64 6.0.0+dfsg-3",
    "libhogweed6:amd64 3.8.1-2", "libice6:amd64 2:1.0.10-1",
    "libidn2-0:amd64 2.3.3-1+b1", "libipt2:amd64 2.0.5-1", "libjansi-java:all 2.4.0-2",
    "libjpeg-dev:amd64 1:2.1.5-2", "libjq1:amd64 1.6-2.1+deb12u1",
    "libjs-underscore:all 1.13.4~dfsg+~1.11.4-3", "libjsr305-java:all 0.1~+svn49-11",
    "libkmod2:amd64 30+20221128-1", "libksba8:amd64 1.6.3-2",
    "libldap-common:all 2.5.13+dfsg-5", "libllvm15:amd64 1:15.0.6-4+b1",
    "liblsan0:amd64 12.2.0-14+deb12u1", "liblzma5:amd64 5.4.1-1+deb12u2",
    "libmagic1:amd64 1:5.44-3", "libmaven-shared-utils-java:all 3.3.4-1",
    "libmbedtls14:amd64 2.28.3-1", "libmnl0:amd64 1.0.4-3", "libmpfr6:amd64 4.2.0-1",
    "libncurses6:amd64 6.4-4", "libnettle8:amd64 3.8.1-2", "libnsl-dev:amd64 1.3.0-2",
    "libnspr4-dev:amd64 2:4.35-1", "libnss3-dev:amd64 2:3.87.1-1+deb12u2",
    "libopencsd1:amd64 1.3.3-1", "libp11-kit-dev:amd64 0.24.1-2",
    "libpam-cap:amd64 1:2.66-4+deb12u2+b2", "libpam-runtime:all 1.5.2-6+deb12u1",
    "libpango-1.0-0:amd64 1.50.12+ds-1", "libpciaccess0:amd64 0.17-2",
    "libperl5.36:amd64 5.36.0-7+deb12u2", "libpixman-1-0:amd64 0.42.2-1",
    "libplexus-classworlds-java:all 2.7.0-1",
    "libplexus-sec-dispatcher-java:all 2.0-3", "libpng-tools:amd64 1.6.39-2+deb12u4",
    "libpolkit-gobject-1-0:amd64 122-3", "libproc2-0:amd64 2:4.0.2-3",
    "libpython3-dev:amd64 3.11.2-1+b1", "libpython3.11-dev:amd64 3.11.2-6+deb12u6",
    "libquadmath0:amd64 12.2.0-14+deb12u1", "libreadline8:amd64 8.2-1.3",
    "librtmp1:amd64 2.4+20151223.gitfa8646d.1-2+b2",
    "libsasl2-modules-db:amd64 2.1.28+dfsg-10", "libsemanage-common:all 3.4-1",
    "libsensors5:amd64 1:3.6.0-7.1", "libsisu-plexus-java:all 0.3.4-3",
    "libsm-dev:amd64 2:1.2.3-1", "libsodium23:amd64 1.0.18-1+deb12u1",
    "libsqlite3-0:amd64 3.40.1-2+deb12u2", "libssh2-1:amd64 1.10.0-3+b1",
    "libstdc++-12-dev:amd64 12.2.0-14+deb12u1", "libsvtav1enc1:amd64 1.4.1+dfsg-1",
    "libtasn1-6:amd64 4.19.0-2+deb12u1", "libtcl8.6:amd64 8.6.13+dfsg-2",
    "libtiff6:amd64 4.5.0-6+deb12u2", "libtirpc-dev:amd64 1.3.3+ds-1",
    "libtsan2:amd64 12.2.0-14+deb12u1", "libudev1:amd64 252.38-1~deb12u1",
    "libunwind8:amd64 1.6.2-3", "libuuid1:amd64 2.38.1-5+deb12u3",
    "libwagon-provider-api-java:all 3.5.3-1", "libwebp7:amd64 1.2.4-0.2+deb12u1",
    "libx11-dev:amd64 2:1.8.4-2+deb12u2", "libxau-dev:amd64 1:1.0.9-1",
    "libxcb-cursor0:amd64 0.1.4-1", "libxcb-glx0:amd64 1.15-1",
    "libxcb-randr0:amd64 1.15-1", "libxcb-shape0:amd64 1.15-1",
    "libxcb-util1:amd64 0.4.0-1+b1", "libxcb1:amd64 1.15-1",
    "libxcomposite1:amd64 1:0.4.5-1", "libxdmcp-dev:amd64 1:1.1.2-3",
    "libxext6:amd64 2:1.3.4-1+b1", "libxft-dev:amd64 2.3.6-1",
    "libxinerama1:amd64 2:1.1.4-3", "libxkbfile1:amd64 1:1.1.0-1",
    "libxmlb2:amd64 0.3.10-2", "libxmlsec1-gcrypt:amd64 1.2.37-2",
    "libxmlsec1-openssl:amd64 1.2.37-2", "libxpm4:amd64 1:3.5.12-1.1+deb12u1",
    "libxrender1:amd64 1:0.9.10-1.1", "libxslt1.1:amd64 1.1.35-1+deb12u3",
    "libxt-dev:amd64 1:1.2.1-1.1", "libxtst6:amd64 2:1.2.3-1.1",
    "libxxf86vm1:amd64 1:1.1.4-1+b2", "libyaml-dev:amd64 0.2.5-1",
    "libz3-dev:amd64 4.8.12-3.1", "linux-perf:amd64 6.1.187-1",
    "llvm-14-dev:amd64 1:14.0.6-12", "llvm-14-tools:amd64 1:14.0.6-12",
    "login:amd64 1:4.13+dfsg1-1+deb12u1", "lsof:amd64 4.95.0-1",
    "man-db:amd64 2.11.2-2", "maven:all 3.8.7-1",
]


# --------------------------------------------------------------- dpkg.log

DPKG_TARGET = 130_000


def bump(version, rng):
    """A plausible next Debian version."""
    m = re.search(r"([+~]deb12u)(\d+)$", version)
    if m:
        return version[: m.start(2)] + str(int(m.group(2)) + 1)
    m = re.search(r"-(\d+)$", version)
    if m and rng.random() < 0.5:
        return version[: m.start(1)] + str(int(m.group(1)) + 1)
    return version + "+deb12u1"


class Clock:
    def __init__(self, rng):
        self.rng = rng
        # 2026-03-02 06:25:07, as seconds since 2026-01-01 00:00:00
        self.t = (31 + 28 + 1) * 86400 + 6 * 3600 + 25 * 60 + 7

    def tick(self):
        r = self.rng.random()
        if r < 0.12:
            self.t += 1
        elif r < 0.15:
            self.t += self.rng.randint(2, 9)

    def gap(self):
        r = self.rng.random()
        if r < 0.35:
            self.t += self.rng.randint(3, 240)  # another apt call in the same run
        else:
            self.t += self.rng.randint(3600, 4 * 86400)

    def stamp(self):
        days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        d, s = divmod(self.t, 86400)
        month = 0
        while d >= days[month]:
            d -= days[month]
            month += 1
        return "2026-%02d-%02d %02d:%02d:%02d" % (
            month + 1, d + 1, s // 3600, s // 60 % 60, s % 60)


def make_dpkg_log():
    rng = random.Random(20260302)
    clock = Clock(rng)
    arch_of = {}
    avail = {}
    for entry in PACKAGES:
        name_arch, ver = entry.split(" ")
        name, arch = name_arch.split(":")
        arch_of[name] = arch
        avail[name] = ver
    names = sorted(avail)
    installed = {n: avail[n] for n in names if rng.random() < 0.7}
    trig_ver = {"libc-bin": "2.36-9+deb12u4", "man-db": "2.11.2-2"}
    installed.update(trig_ver)
    arch_of.update({"libc-bin": "amd64", "man-db": "amd64"})
    out = []

    def line(text):
        out.append("%s %s\n" % (clock.stamp(), text))
        clock.tick()

    def pkg(n):
        return "%s:%s" % (n, arch_of[n])

    def configure(batch, pending):
        line("startup packages configure")
        awaiting = []
        for n in batch:
            v = installed[n]
            line("configure %s %s <none>" % (pkg(n), v))
            line("status unpacked %s %s" % (pkg(n), v))
            if rng.random() < 0.04:
                line("conffile /etc/%s/%s.conf %s" % (
                    n, n.split("-")[0], rng.choice(["keep", "install"])))
            line("status half-configured %s %s" % (pkg(n), v))
            if pending and rng.random() < 0.15:
                line("status triggers-awaited %s %s" % (pkg(n), v))
                awaiting.append(n)
            else:
                line("status installed %s %s" % (pkg(n), v))
        for t in pending:
            v = installed[t]
            line("trigproc %s %s <none>" % (pkg(t), v))
            line("status half-configured %s %s" % (pkg(t), v))
            line("status installed %s %s" % (pkg(t), v))
        for n in awaiting:
            line("status installed %s %s" % (pkg(n), installed[n]))

    def note_trigger(n, pending):
        t = "libc-bin" if n.startswith("lib") else "man-db"
        if t not in pending:
            pending.append(t)
            line("status triggers-pending %s %s" % (pkg(t), installed[t]))

    while sum(map(len, out)) < DPKG_TARGET:
        clock.gap()
        kind = rng.random()
        if kind < 0.55:  # upgrade run
            cands = [n for n in names if n in installed]
            batch = sorted(rng.sample(cands, min(len(cands), rng.randint(1, 14))))
            per_call = rng.random() < 0.3  # apt sometimes calls dpkg once a package
            groups = [[n] for n in batch] if per_call else [batch]
            for group in groups:
                pending = []
                line("startup archives unpack")
                for n in group:
                    old = installed[n]
                    new = bump(old, rng)
                    line("upgrade %s %s %s" % (pkg(n), old, new))
                    if rng.random() < 0.6:
                        note_trigger(n, pending)
                    line("status half-configured %s %s" % (pkg(n), old))
                    line("status unpacked %s %s" % (pkg(n), old))
                    line("status half-installed %s %s" % (pkg(n), old))
                    line("status unpacked %s %s" % (pkg(n), new))
                    installed[n] = new
                    avail[n] = new
                configure(group, pending)
        elif kind < 0.88:  # install run
            cands = [n for n in names if n not in installed]
            if not cands:
                continue
            batch = sorted(rng.sample(cands, min(len(cands), rng.randint(1, 16))))
            pending = []
            line("startup archives unpack")
            for n in batch:
                v = avail[n]
                line("install %s <none> %s" % (pkg(n), v))
                if rng.random() < 0.5:
                    note_trigger(n, pending)
                line("status half-installed %s %s" % (pkg(n), v))
                line("status unpacked %s %s" % (pkg(n), v))
                installed[n] = v
            configure(batch, pending)
        else:  # remove run
            cands = [n for n in names if n in installed and n not in trig_ver]
            batch = sorted(rng.sample(cands, min(len(cands), rng.randint(1, 8))))
            line("startup packages remove")
            pending = []
            for n in batch:
                v = installed.pop(n)
                line("status installed %s %s" % (pkg(n), v))
                line("remove %s %s <none>" % (pkg(n), v))
                if rng.random() < 0.5:
                    note_trigger(n, pending)
                line("status half-configured %s %s" % (pkg(n), v))
                line("status half-installed %s %s" % (pkg(n), v))
                line("status config-files %s %s" % (pkg(n), v))
                line("status not-installed %s <none>" % pkg(n))
            if pending:
                line("startup packages configure")
                for t in pending:
                    v = installed[t]
                    line("trigproc %s %s <none>" % (pkg(t), v))
                    line("status half-configured %s %s" % (pkg(t), v))
                    line("status installed %s %s" % (pkg(t), v))
    return "".join(out).encode()


# ----------------------------------------------------------- records.json

JSON_TARGET = 130_000

FIRST = ["ada", "bruno", "chen", "dana", "elif", "farid", "greta", "hiro", "ines",
         "jonas", "kofi", "lena", "mateo", "nadia", "oskar", "priya", "quentin",
         "rosa", "sven", "tariq", "ulla", "vera", "wei", "yusuf", "zoe"]
LAST = ["abe", "berg", "costa", "diaz", "eriksen", "fischer", "gupta", "hansen",
        "ito", "jensen", "kowalski", "lopez", "moreau", "novak", "okafor", "petrov",
        "rossi", "sato", "tanaka", "weber"]
LABELS = [
    ("bug", "d73a4a", True), ("enhancement", "a2eeef", True),
    ("documentation", "0075ca", True), ("good first issue", "7057ff", True),
    ("performance", "fbca04", False), ("needs-repro", "e4e669", False),
    ("area/codec", "c5def5", False), ("area/tokenizer", "c5def5", False),
    ("area/cli", "c5def5", False), ("area/kernels", "c5def5", False),
    ("platform/windows", "bfd4f2", False), ("platform/macos", "bfd4f2", False),
    ("duplicate", "cfd3d7", True), ("wontfix", "ffffff", True),
]
COMPONENTS = ["decoder", "encoder", "tokenizer", "CLI", "container format", "range coder",
              "model loader", "GGUF parser", "benchmark", "docs", "CI", "kernel dispatch"]
PROBLEMS = ["panics", "returns wrong length", "is slow", "leaks memory", "hangs",
            "rejects valid input", "prints a confusing error", "crashes with SIGILL",
            "produces different output", "ignores the --threads flag"]
CONDITIONS = ["on empty input", "with files over 4 GiB", "on aarch64", "when stdin is a pipe",
              "after an interrupted run", "with a quantized model", "on Windows",
              "in release builds only", "with non-UTF-8 file names",
              "when the cache directory is read-only"]
FEATURES = ["Add a --level option", "Support streaming decompression",
            "Report throughput in the progress bar", "Allow a custom model path",
            "Document the container layout", "Add checksums per block",
            "Expose a library API for chunked input", "Ship shell completions"]
SENTENCES = [
    "Steps to reproduce are below.", "This started after the last upgrade.",
    "I could not reproduce it with a smaller file.", "Logs are attached.",
    "Happy to send a pull request if the approach sounds right.",
    "The same file round-trips fine with the previous release.",
    "Expected the command to exit with status 0.",
    "Running with RUST_BACKTRACE=1 shows the frame in the decoder loop.",
    "Memory usage grows steadily until the process is killed.",
    "Tested on two machines with the same result.",
]


def iso(t):
    days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    d, s = divmod(t, 86400)
    year = 2025
    while d >= 365:
        d -= 365
        year += 1
    month = 0
    while d >= days[month]:
        d -= days[month]
        month += 1
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (
        year, month + 1, d + 1, s // 3600, s // 60 % 60, s % 60)


def make_records():
    rng = random.Random(4242)
    users = []
    for i in range(36):
        f, l = rng.choice(FIRST), rng.choice(LAST)
        login = rng.choice(["%s-%s" % (f, l), "%s%s" % (f, l[:3]), "%s%d" % (f, rng.randint(7, 99))])
        users.append({
            "login": login,
            "id": rng.randint(100_000, 190_000_000),
            "name": "%s %s" % (f.capitalize(), l.capitalize()),
            "email": "%s.%s@%s" % (f, l, rng.choice(["example.com", "example.org", "example.net"])),
            "type": "User",
            "site_admin": False,
        })
    maintainers = users[:4]
    label_objs = [{"id": 5_100_000_000 + 7919 * i, "name": n, "color": c, "default": d}
                  for i, (n, c, d) in enumerate(LABELS)]
    records = []
    t = 40 * 86400 + 9 * 3600
    number = 1
    issue_id = 2_900_000_000
    while len(json.dumps(records, indent=2)) < JSON_TARGET:
        t += rng.randint(600, 3 * 86400)
        issue_id += rng.randint(1000, 900_000)
        user = rng.choice(users)
        is_feature = rng.random() < 0.3
        if is_feature:
            title = rng.choice(FEATURES)
            labels = [label_objs[1]]
        else:
            title = "%s %s %s" % (rng.choice(COMPONENTS), rng.choice(PROBLEMS), rng.choice(CONDITIONS))
            title = title[0].upper() + title[1:]
            labels = [label_objs[0]]
        labels += rng.sample(label_objs[4:], rng.choice([0, 0, 1, 1, 2]))
        closed = rng.random() < 0.55
        comments = rng.choice([0, 0, 1, 1, 2, 3, 4, 6, 9, 14])
        updated = t + rng.randint(60, 20 * 86400)
        closed_at = updated if closed else None
        reactions = {"+1": rng.choice([0, 0, 0, 1, 2, 5]), "-1": 0,
                     "laugh": 0, "hooray": rng.choice([0, 0, 0, 1]),
                     "confused": rng.choice([0, 0, 0, 0, 1]),
                     "heart": rng.choice([0, 0, 1]), "rocket": 0, "eyes": rng.choice([0, 0, 1])}
        reactions = {"total_count": sum(reactions.values()), **reactions}
        rec = {
            "id": issue_id,
            "number": number,
            "title": title,
            "state": "closed" if closed else "open",
            "state_reason": ("completed" if rng.random() < 0.85 else "not_planned") if closed else None,
            "locked": rng.random() < 0.03,
            "user": user,
            "labels": sorted(labels, key=lambda l: l["name"]),
            "assignees": [m["login"] for m in rng.sample(maintainers, rng.choice([0, 1, 1, 2]))],
            "milestone": None if rng.random() < 0.5 else {
                "number": 3 + number // 60,
                "title": "v0.%d.0" % (3 + number // 60),
                "due_on": iso((number // 60 + 2) * 60 * 86400),
            },
            "comments": comments,
            "created_at": iso(t),
            "updated_at": iso(updated),
            "closed_at": iso(closed_at) if closed_at else None,
            "author_association": "MEMBER" if user in maintainers else rng.choice(
                ["NONE", "NONE", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR"]),
            "draft": False,
            "reactions": reactions,
            "score": round(rng.uniform(0.05, 1.0), 4),
            "body": " ".join(rng.sample(SENTENCES, rng.randint(1, 4))),
        }
        if rng.random() < 0.25:
            rec["pull_request"] = {
                "merged_at": iso(closed_at) if closed else None,
                "diff_url": "https://example.com/llmc/llmc/pull/%d.diff" % number,
            }
        records.append(rec)
        number += 1
    records.pop()  # keep the array just under the target
    return (json.dumps(records, indent=2, ensure_ascii=False) + "\n").encode()


# -------------------------------------------------------------- source.rs

def make_source():
    parts = []
    total = 0
    for path in SOURCE_FILES:
        text = subprocess.run(["git", "-C", ROOT, "show", "%s:%s" % (SOURCE_COMMIT, path)],
                              check=True, capture_output=True).stdout
        chunk = b"// ===== " + path.encode() + b" =====\n" + text
        if parts and total + len(chunk) > SOURCE_LIMIT:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


# ------------------------------------------------------------ seismic.bin

SEISMIC_SAMPLES = 51_200  # 100 Hz, 512 s; 100 KiB as int16


def make_seismic():
    rng = random.Random(7777)
    n = SEISMIC_SAMPLES
    rate = 100.0
    micro = [(rng.uniform(0.1, 0.3), rng.uniform(0, 2 * math.pi), rng.uniform(150, 400))
             for _ in range(4)]
    events = []
    at = rng.uniform(20, 60)
    while at < n / rate:
        mag = rng.uniform(800, 9000)
        comps = [(rng.uniform(1.0, 12.0), rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 1.0))
                 for _ in range(rng.randint(2, 4))]
        events.append((at, mag, rng.uniform(0.4, 2.5), rng.uniform(3.0, 15.0), comps))
        at += rng.uniform(40, 140)
    samples = []
    for i in range(n):
        t = i / rate
        v = sum(a * math.sin(2 * math.pi * f * t + p) for f, p, a in micro)
        for start, mag, decay, s_delay, comps in events:
            for onset, scale in ((start, 0.35), (start + s_delay, 1.0)):
                dt = t - onset
                if 0 <= dt < 60:
                    env = scale * mag * (1 - math.exp(-8 * dt)) * math.exp(-decay * dt)
                    v += env * sum(a * math.sin(2 * math.pi * f * dt + p) for f, p, a in comps)
        v += rng.gauss(0, 40)
        samples.append(max(-32768, min(32767, int(round(v)))))
    return struct.pack("<%dh" % n, *samples)


# --------------------------------------------------------------- object.o

def make_object(use_cc):
    cc = shutil.which("cc")
    target = os.path.join(DATA, "object.o")
    if not use_cc or cc is None:
        print("object.o: kept as committed (%s)" % ("--no-cc" if not use_cc else "no cc"))
        return
    subprocess.run([cc, "-O2", "-g", "-fdebug-prefix-map=%s=." % DATA, "-c", "object.c",
                    "-o", "object.o"], cwd=DATA, check=True)
    print("object.o: %d bytes (compiled with %s)" % (os.path.getsize(target), cc))


def main():
    os.makedirs(DATA, exist_ok=True)
    outputs = [
        ("dpkg.log", make_dpkg_log),
        ("records.json", make_records),
        ("source.rs", make_source),
        ("seismic.bin", make_seismic),
    ]
    for name, fn in outputs:
        data = fn()
        with open(os.path.join(DATA, name), "wb") as f:
            f.write(data)
        print("%s: %d bytes" % (name, len(data)))
    make_object("--no-cc" not in sys.argv[1:])


if __name__ == "__main__":
    main()
