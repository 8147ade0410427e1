# Seed 003's rideshare service in Ruby: the same endpoints and functions as server.py, for
# profiling from outside with `embers agent` (rbspy underneath).
#
#   ruby server.rb --region eu-west-1 [--port 0] [--phase-seconds 30]
#   embers agent --app ride-sharing-app --tag region=eu-west-1 --pid PID
#
# Prints "listening PORT" once it accepts requests.

require 'socket'

SEARCH_RADIUS = { 'bike' => 1, 'scooter' => 2, 'car' => 4 }.freeze
UNIT_SECONDS = 0.005

def option(name, default)
  i = ARGV.index("--#{name}")
  i ? ARGV[i + 1] : default
end

REGION = option('region', nil) || abort('usage: ruby server.rb --region REGION [--port N]')
PHASE_SECONDS = option('phase-seconds', '30').to_f

# Spins for `seconds` of this thread's CPU time.
def burn(seconds)
  finish = Process.clock_gettime(Process::CLOCK_THREAD_CPUTIME_ID) + seconds
  i = 0
  i += 1 while Process.clock_gettime(Process::CLOCK_THREAD_CPUTIME_ID) < finish
  i
end

def high_cpu_phase?
  (Time.now.to_f / PHASE_SECONDS).floor.even?
end

def mutex_lock(n)
  burn(n * UNIT_SECONDS * (high_cpu_phase? ? 6 : 1))
end

def check_driver_availability(n)
  burn(n * UNIT_SECONDS * 0.5)
  mutex_lock(n) if REGION == 'us-west-1'
end

def find_nearest_vehicle(n, vehicle)
  burn(n * UNIT_SECONDS)
  check_driver_availability(n) if vehicle == 'car'
end

def order_bike(search_radius)
  find_nearest_vehicle(search_radius, 'bike')
end

def order_scooter(search_radius)
  find_nearest_vehicle(search_radius, 'scooter')
end

def order_car(search_radius)
  find_nearest_vehicle(search_radius, 'car')
end

ORDERS = { '/bike' => :order_bike, '/scooter' => :order_scooter, '/car' => :order_car }.freeze

def respond(client, status, body)
  client.write("HTTP/1.1 #{status}\r\ncontent-type: text/plain\r\n" \
               "content-length: #{body.bytesize}\r\nconnection: close\r\n\r\n#{body}")
end

def handle(client)
  request = client.gets.to_s
  while (line = client.gets) && line != "\r\n"; end # skip the headers
  path = request.split[1]
  order = ORDERS[path]
  if order
    send(order, SEARCH_RADIUS[path[1..]])
    respond(client, '200 OK', "#{path[1..]} ordered in #{REGION}\n")
  else
    respond(client, '404 Not Found', "try /bike, /scooter or /car\n")
  end
rescue IOError, SystemCallError
  nil # the client went away
ensure
  client.close
end

server = TCPServer.new('127.0.0.1', option('port', '0').to_i)
puts "listening #{server.addr[1]}"
$stdout.flush
trap('INT') { exit }
trap('TERM') { exit }
loop do
  client = server.accept
  Thread.new(client) { |c| handle(c) }
end
