#!/usr/bin/env python3
"""Word count mapper in the classic Hadoop-streaming style: one "word<TAB>1" line per word.

A word is a maximal run of letters (str.isalpha), case-sensitive: the same tokenisation as the
built-in wordcount app, so both give the same output.
"""
import sys


def words(line):
    start = None
    for i, ch in enumerate(line):
        if ch.isalpha():
            if start is None:
                start = i
        elif start is not None:
            yield line[start:i]
            start = None
    if start is not None:
        yield line[start:]


def main():
    out = sys.stdout
    for line in sys.stdin:
        for word in words(line):
            out.write(word + "\t1\n")


if __name__ == "__main__":
    main()
