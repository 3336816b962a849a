#!/usr/bin/env bash
#
# lint.sh - the checks `make lint` runs (docs/principles.md, rules 7 and 9):
#
#   1. layers: every `#include "x.h"` in src/ points to the same layer or a
#      lower one (app > service > protocol > transport > core), and the
#      layer table names every module and only modules that have a file;
#   2. allocation: no raw malloc/calloc/realloc/free/strdup/strndup call
#      outside src/mem.c (rule 7: every byte goes through mem.c);
#   3. format: clang-format --dry-run --Werror over the C sources;
#   4. conn internals: every member of struct conn (src/conn.h) is named
#      cn_*, and no file but conn's own (src/conn.h, src/conn.c,
#      src/conn_*.[ch]) reaches one (`->cn_x` or `.cn_x`) or includes
#      conn_internal.h: the other modules use conn.h's accessors
#      (conn_id(), conn_paused(), ...).
#
# Prints every failure as "file:line: what" and exits 1, or prints
# "lint: ok" and exits 0. Run from anywhere; it works on the repository
# this script lives in.
#
# A deliberate exception to check 2 carries a comment on the same line
# with "lint: allow" and the reason, e.g.
#     free(p); /* lint: allow - from getline(), not ours */
# (HAProxy's rule: a violation is accepted only with a comment saying why).

set -u
cd "$(dirname "$0")/.." || exit 2

failed=0

fail()
{
    printf '%s\n' "$*"
    failed=1
}

# ---------------------------------------------------------------------
# 1. Layers. One row per layer, lowest first; a module is a file's
#    basename without .c/.h, for the files in src/ (and its subfolders)
#    and include/. The table names exactly the modules that exist: a new
#    file must be added here, and a name here with no file fails lint
#    (the table is the map of the tree; docs/principles.md, rule 9).
#    (moor is include/moor.h, the public header; it and the api files,
#    its wrappers, sit with server, which is most of moor.h.)
# ---------------------------------------------------------------------

declare -A layer_of
layer_names=(core transport protocol service app)
layer_rows=(
    "util mem log buf msg timer loop ratelimit iplimit pool hist procfs addr url
     series history"
    "conn conn_write conn_internal listen tls resolve"
    "http1 http1_internal http1_response ws sse frame json influx_line"
    "pubsub push metrics server http_server ws_server ws_client debug
     api api_loop api_server api_client api_pubsub moor http_client
     http_client_int http_client_call http_client_conn jwt auth auth_int influx
     auth_callback debug_stream dashboard"
    "main serve config flags signals sdnotify bench
     bench_int bench_main bench_flags bench_target bench_driver bench_report
     bench_idle bench_echo bench_broadcast bench_handshake bench_http
     bench_http_report
     bench_target soak soak_int soak_main soak_flags soak_conns soak_http soak_sse
     soak_sample soak_tcp
     soak_stats soak_report soak_plot"
)
for i in "${!layer_rows[@]}"; do
    for m in ${layer_rows[$i]}; do
        layer_of[$m]=$i
    done
done

declare -A have_file
while IFS= read -r f; do
    base=${f##*/}
    have_file[${base%.*}]=1
done < <(find src include -type f \( -name '*.c' -o -name '*.h' \))
for m in $(printf '%s\n' "${!layer_of[@]}" | sort); do
    if [[ -z ${have_file[$m]+x} ]]; then
        fail "scripts/lint.sh: layer table names \"$m\", which has no" \
             "src/**/$m.[ch] or include/$m.h; remove it from the table"
    fi
done

shopt -s nullglob
src_files=(src/*.c src/*.h src/*/*.c src/*/*.h)

for f in "${src_files[@]}"; do
    base=$(basename "$f")
    mod=${base%.*}
    if [[ -z ${layer_of[$mod]+x} ]]; then
        fail "$f: module \"$mod\" is in no layer; add it to the layer" \
             "table at the top of scripts/lint.sh"
        continue
    fi
    from=${layer_of[$mod]}
    while IFS=: read -r line inc; do
        imod=${inc%.h}
        if [[ -z ${layer_of[$imod]+x} ]]; then
            fail "$f:$line: includes \"$inc\", which is in no layer; add" \
                 "\"$imod\" to the layer table in scripts/lint.sh"
        elif ((layer_of[$imod] > from)); then
            fail "$f:$line: ${layer_names[$from]} module \"$mod\" includes" \
                 "\"$inc\" from the higher ${layer_names[${layer_of[$imod]}]}" \
                 "layer; call down, or take a callback from above"
        fi
    done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
             sed -E 's/^([0-9]+):[^"]*"([^"]*)".*/\1:\2/; s#:.*/#:#')
done

# ---------------------------------------------------------------------
# 2. Raw allocation outside src/mem.c. Comments and string literals are
#    blanked first (keeping line numbers), so prose that mentions free()
#    does not count; mem_free(, SSL_free(, p->free( do not match.
# ---------------------------------------------------------------------

alloc_files=()
for f in src/*.c src/*.h src/*/*.c src/*/*.h include/*.h; do
    [[ $f == src/mem.c ]] || alloc_files+=("$f")
done

if ((${#alloc_files[@]})); then
    # shellcheck disable=SC2016
    hits=$(perl -e '
        my $calls = qr/(?<![\w.>])(malloc|calloc|realloc|free|strdup|strndup)/;
        my $blank = qr{/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"
                       |\x27(?:\\.|[^\x27\\\n])*\x27}xs;
        for my $f (@ARGV) {
            open(my $fh, "<", $f) or next;
            local $/;
            my $src = <$fh>;
            close $fh;
            my @allow = map { /lint:\s*allow/ ? 1 : 0 } split /\n/, $src, -1;
            # Blank comments and literals, keeping every newline.
            $src =~ s{($blank)}{ (my $m = $1) =~ s/[^\n]/ /g; $m }ge;
            my $n = 0;
            for my $line (split /\n/, $src, -1) {
                $n++;
                next if $allow[$n - 1];
                while ($line =~ /$calls\s*\(/g) {
                    print "$f:$n: raw $1() outside src/mem.c;",
                          " use mem_$1 with a tag\n";
                }
            }
        }' "${alloc_files[@]}")
    if [[ -n $hits ]]; then
        # mem.h spells the wrappers mem_alloc/mem_calloc/...: say so.
        hits=${hits//use mem_malloc/use mem_alloc}
        hits=${hits//use mem_strdup/use mem_strndup}
        fail "$hits"
    fi
fi

# ---------------------------------------------------------------------
# 3. Format.
# ---------------------------------------------------------------------

fmt_files=(src/*.c src/*.h src/*/*.c src/*/*.h include/*.h tests/unit/*.c)
if ! command -v clang-format >/dev/null 2>&1; then
    fail "clang-format not found (Debian: apt-get install clang-format)"
elif ((${#fmt_files[@]})); then
    for f in "${fmt_files[@]}"; do
        if ! out=$(clang-format --dry-run --Werror "$f" 2>&1); then
            n=$(grep -c 'error:' <<<"$out")
            ((n == 1)) && what=place || what=places
            fail "$f: not clang-formatted ($n $what); run: clang-format -i $f"
        fi
    done
fi

# ---------------------------------------------------------------------
# 4. struct conn's members are conn.c's business. They all carry the cn_
#    prefix (checked here, so a new member cannot slip by), and a member
#    access `->cn_x` / `.cn_x`, or an #include of conn_internal.h, outside
#    conn's own files (src/conn.[ch], src/conn_*.[ch]) fails.
#    Comments and string literals are blanked first, as in check 2. The
#    unit tests (tests/unit/test_conn.c) may look inside: they are not
#    checked.
# ---------------------------------------------------------------------

# shellcheck disable=SC2016
hits=$(perl -0777 -ne '
    unless (/^(struct conn \{\n)(.*?)^\};/ms) {
        print "src/conn.h: struct conn not found (check 4)\n";
        exit;
    }
    my $line = 1 + (substr($_, 0, $-[2]) =~ tr/\n//);
    (my $body = $2) =~ s{(/\*.*?\*/)}{ (my $m = $1) =~ s/[^\n]/ /g; $m }ges;
    for my $decl (split /\n/, $body, -1) {
        print "src/conn.h:$line: struct conn member \"$1\" lacks the cn_",
              " prefix (check 4 finds accesses by it)\n"
            if $decl =~ /(\w+)\s*(?:\[\s*\]|:\s*\d+)?\s*;/ && $1 !~ /^cn_/;
        $line++;
    }
' src/conn.h)
[[ -n $hits ]] && fail "$hits"

conn_users=()
for f in src/*.c src/*.h include/*.h; do
    case $f in
    src/conn.[ch] | src/conn_*.[ch]) ;;
    *) conn_users+=("$f") ;;
    esac
done
if ((${#conn_users[@]})); then
    # shellcheck disable=SC2016
    hits=$(perl -e '
        my $blank = qr{/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"
                       |\x27(?:\\.|[^\x27\\\n])*\x27}xs;
        for my $f (@ARGV) {
            open(my $fh, "<", $f) or next;
            local $/;
            my $src = <$fh>;
            close $fh;
            my @raw = split /\n/, $src, -1;
            $src =~ s{($blank)}{ (my $m = $1) =~ s/[^\n]/ /g; $m }ge;
            my $n = 0;
            for my $line (split /\n/, $src, -1) {
                $n++;
                print "$f:$n: includes conn_internal.h, which is for",
                      " src/conn*.c only; use conn.h\n"
                    if $line =~ /^\s*#\s*include\s*$/ && $raw[$n - 1] =~
                        /^\s*#\s*include\s*"conn_internal\.h"/;
                while ($line =~ /(?:->|\.)\s*(cn_\w+)/g) {
                    print "$f:$n: touches struct conn member $1 outside",
                          " src/conn*.[ch]; use (or add) an accessor in",
                          " conn.h\n";
                }
            }
        }' "${conn_users[@]}")
    [[ -n $hits ]] && fail "$hits"
fi

if ((failed)); then
    exit 1
fi
echo "lint: ok"
