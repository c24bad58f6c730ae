#!/bin/sh
# git workload for the drop-in tests: init, add, commits on two branches, a
# merge, log, gc and fsck in a new repository under the current directory.
# Fixed names and dates make the output (hashes included) reproducible.
set -e
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="Slab Guard" GIT_AUTHOR_EMAIL="slab@example.com"
export GIT_COMMITTER_NAME="Slab Guard" GIT_COMMITTER_EMAIL="slab@example.com"
export GIT_AUTHOR_DATE="2024-01-02T03:04:05Z" GIT_COMMITTER_DATE="2024-01-02T03:04:05Z"
git -c init.defaultBranch=main init -q repo
cd repo
i=0
while [ $i -lt 200 ]; do
  mkdir -p "dir$((i % 7))"
  printf 'file %d\nline two %d\n' $i $((i * i)) > "dir$((i % 7))/f$i.txt"
  i=$((i + 1))
done
git add .
git commit -q -m "first: 200 files"
git checkout -q -b topic
sed -i 's/two/TWO/' dir3/*.txt
git commit -q -am "topic: shout in dir3"
git checkout -q main
printf 'more\n' >> dir1/f1.txt
git commit -q -am "main: extend f1"
git merge -q --no-edit topic
git log --graph --stat --format='%H %s'
git gc -q
git fsck --no-progress --full
git count-objects -v | grep -v size
git diff HEAD~2 --stat
