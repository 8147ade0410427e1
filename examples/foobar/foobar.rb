# The foo()/bar() program in Ruby: foo does three times the work of bar (75 % / 25 %).
# Usage: ruby foobar.rb [SECONDS] [FOO] [BAR]   (SECONDS 0: run forever)
# Prints "ready <pid>" once running, so tests can wait for it instead of sleeping.

def work(n)
  i = 0
  i += 1 while i < n
end

def foo(n)
  work(n)
end

def bar(n)
  work(n)
end

seconds = (ARGV[0] || "0").to_f
foo_n = (ARGV[1] || "75000").to_i
bar_n = (ARGV[2] || "25000").to_i
$stdout.puts "ready #{Process.pid}"
$stdout.flush
deadline = seconds.positive? ? Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds : nil
while deadline.nil? || Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
  foo(foo_n)
  bar(bar_n)
end
