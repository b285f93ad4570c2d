#!/bin/sh
# llmq itself: help, version, unknown commands, every --help exits 0 and
# every long option appears in the command's man page.
. "$(dirname "$0")/../lib.sh"

expect_out '^usage: llmq' llmq --help
expect_out '^llmq [0-9]+\.[0-9]+\.[0-9]+$' llmq --version
expect_code 2 llmq
expect_err 2 "unknown command 'frobnicate'" llmq frobnicate
expect_out '^usage: llmq verify' llmq help verify
expect_err 2 "unknown command" llmq help frobnicate
# nothing after --version, --help or help COMMAND is silently dropped
expect_err 2 "unexpected argument 'x' after '--version'" llmq --version x
expect_err 2 "unexpected argument 'x' after '--help'" llmq --help x
expect_err 2 "unexpected argument 'extra' after 'help verify'" llmq help verify extra
# numbers are read whole: strtoll would skip the leading blank
expect_err 2 "invalid value ' 16' for '--ctx'" llmq verify x --ctx ' 16'
expect_err 2 "invalid value ' 0.5' for '--alpha'" llmq smooth x --alpha ' 0.5'
# argument text is echoed escaped: one line, no control bytes
expect_err 2 "invalid value 'a\\\\nb' for '--ctx'" llmq verify x --ctx "$(printf 'a\nb')"
expect_err 2 "unknown option '--x\\\\x1by'" llmq verify "--x$(printf '\033')y"
# an empty name is refused before any work, not at the final rename
expect_err 2 "option '--output' needs a directory name, not ''" llmq pack x -o ''
expect_err 2 "option '--kld-save' needs a file name, not ''" llmq verify x --kld-save=
expect_err 2 "an empty argument names no model" llmq verify ''

for cmd in $(llmq --help | sed -n 's/^  \([a-z-]*\) .*/\1/p'); do
    expect_out "^usage: llmq $cmd" llmq "$cmd" --help
    check "man/llmq-$cmd.1 exists" test -f "man/llmq-$cmd.1"
    check "llmq.1 lists $cmd" grep -q "^.B $cmd" man/llmq.1
    for opt in $(llmq "$cmd" --help | sed -n 's/^  --\([a-z0-9-]*\).*/\1/p'); do
        check "man/llmq-$cmd.1 documents --$opt" grep -q -- "-\\\\-$(echo "$opt" | sed 's/-/\\\\-/g')" "man/llmq-$cmd.1"
    done
    expect_err 2 "unknown option '--no-such-option'" llmq "$cmd" --no-such-option
done
finish
