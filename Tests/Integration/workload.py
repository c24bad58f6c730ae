# A python3 workload for the drop-in tests: lots of small and large objects,
# a 200k-entry dict, a JSON round trip, sorting, regular expressions, string
# building, a class-heavy section and deliberate garbage.  Prints results that
# must be identical with and without slabguard.
import collections
import hashlib
import json
import re

d = {f"key{i}": [i, str(i) * 3, {"x": i * 1.5, "tags": ["a", "b"][: i % 3]}] for i in range(200000)}
text = json.dumps(d, sort_keys=True)
back = json.loads(text)
assert back == d
print("json", len(text), hashlib.sha256(text.encode()).hexdigest()[:16])

keys = sorted(back, key=lambda k: (len(k), k[::-1]))
print("sorted", keys[:3], keys[-3:])
print("regex", sum(1 for k in keys if re.fullmatch(r"key(\d)\1+", k)))
words = re.findall(r"[a-z]+\d{2}7", text[:2_000_000])
print("findall", len(words), collections.Counter(w[:4] for w in words).most_common(2))


class Node:
    __slots__ = ("value", "children")

    def __init__(self, value):
        self.value = value
        self.children = []


root = Node(0)
frontier = [root]
for i in range(1, 100000):
    n = Node(i)
    frontier[i // 4 % len(frontier)].children.append(n)
    frontier.append(n)


def total(node):
    s, stack = 0, [node]
    while stack:
        x = stack.pop()
        s += x.value
        stack.extend(x.children)
    return s


print("tree", total(root))
parts = []
for i in range(50000):
    parts.append(("%d:%s" % (i, "z" * (i % 50))).upper())
print("join", len("|".join(parts)))
del d, back, parts, root, frontier
big = [bytes(1000 + i % 5000) for i in range(2000)]
print("bytes", sum(map(len, big)))
