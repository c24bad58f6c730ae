// cxx_stl.cpp — an ordinary C++ program (containers, strings, streams, smart pointers,
// virtual destructors, over-aligned types, exceptions, regex, threads) that must run
// under every checking mode with no report and its output unchanged
// (CxxMismatchTests.swift): the C++ runtime's own allocations and frees — sized,
// aligned, array — all pair up.
#include <deque>
#include <functional>
#include <iostream>
#include <list>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

struct Base {
    virtual ~Base() = default;
    virtual int size() const = 0;
};
struct Derived : Base {
    std::string text;
    std::vector<int> values;
    explicit Derived(int i) : text(std::to_string(i)), values(i % 17, i) {}
    int size() const override { return static_cast<int>(text.size() + values.size()); }
};
struct alignas(64) Line { double d[8]; };

static long work(int seed) {
    long total = 0;
    std::map<std::string, std::vector<int>> byKey;
    std::unordered_map<int, std::string> strings;
    std::list<std::unique_ptr<Base>> objects;
    std::deque<std::shared_ptr<Line>> lines;
    for (int i = 0; i < 20000; i++) {
        byKey["key" + std::to_string(i % 500)].push_back(i);
        strings[i] = std::string(i % 40, 'x');
        objects.push_back(std::make_unique<Derived>(i));
        if (objects.size() > 100) objects.pop_front();
        lines.push_back(std::make_shared<Line>());
        if (lines.size() > 50) lines.pop_front();
        std::vector<Line> block(i % 7);
        std::unique_ptr<int[]> array(new int[i % 13 + 1]());
        total += array[0] + static_cast<long>(block.size());
        try {
            if (i % 1000 == 0) throw std::runtime_error("error " + std::to_string(i));
        } catch (const std::exception &e) {
            total += e.what()[0];
        }
    }
    for (const auto &object : objects) total += object->size();
    std::ostringstream out;
    out << byKey.size() << " " << strings.size() << " " << seed;
    std::regex pattern("([0-9]+) ([0-9]+)");
    std::smatch match;
    std::string text = out.str();
    if (std::regex_search(text, match, pattern)) total += static_cast<long>(match.size());
    std::function<long(long)> add = [&](long x) { return x + static_cast<long>(byKey.size()); };
    std::set<std::string> names{"alpha", "beta", "gamma"};
    return add(total) + static_cast<long>(names.size());
}

int main() {
    long totals[2] = {0, 0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; t++) threads.emplace_back([&totals, t] { totals[t] = work(t); });
    for (auto &thread : threads) thread.join();
    std::cout << "totals " << totals[0] << " " << totals[1] << std::endl;
    return 0;
}
