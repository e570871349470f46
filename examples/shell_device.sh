#!/bin/sh
# A fleetmind device in plain shell: mosquitto_pub / mosquitto_sub, grep, cut and tr.
# It announces one agent ("shout", which upper-cases text), takes one dispatched subtask,
# and sends its result. The protocol is in docs/protocol.md.
#   usage: examples/shell_device.sh HOST PORT [FLEET [USERNAME PASSWORD_FILE]]
# With a username (the device's id on a broker from `fleetmind broker config`) it logs in;
# the fleet name must be the one the orchestrator uses (`--fleet-name`, default "default").
set -eu
HOST=$1
PORT=$2
PREFIX="fleetmind/${3:-default}"
DEVICE=${4:-sh-1}
AGENT=shout
MQTT="-h $HOST -p $PORT -q 1"
if [ -n "${5:-}" ]; then
    MQTT="$MQTT -u $DEVICE -P $(cat "$5")"
fi
INBOX="$PREFIX/devices/$DEVICE/inbox"

now() { date +%s; }
field() { grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | cut -d '"' -f 4; }

# 1. A persistent session subscribed to the device's inbox, so no dispatch is missed.
mosquitto_sub $MQTT -c -i "$DEVICE" -t "$INBOX" -E

# 2. The agent's card and the device's presence, both retained.
mosquitto_pub $MQTT -r -t "$PREFIX/devices/$DEVICE/agents/$AGENT/card" -m "{\"v\":1,\"kind\":\"card\",\
\"id\":\"card-$(now)\",\"sender\":\"$DEVICE\",\"sent_at\":$(now),\"payload\":{\
\"device\":\"$DEVICE\",\"profile\":{\"id\":\"$AGENT\",\"description\":\"Upper-cases text\"}}}"
mosquitto_pub $MQTT -r -t "$PREFIX/devices/$DEVICE/presence" -m "{\"v\":1,\"kind\":\"presence\",\
\"id\":\"presence-$(now)\",\"sender\":\"$DEVICE\",\"sent_at\":$(now),\"payload\":{\
\"state\":\"online\",\"agents\":[\"$AGENT\"]}}"

# 3. One dispatch: the envelope's id, the task, the subtask and its input.
MESSAGE=$(mosquitto_sub $MQTT -c -i "$DEVICE" -t "$INBOX" -C 1)
DISPATCH=$(printf '%s' "$MESSAGE" | field id)
TASK=$(printf '%s' "$MESSAGE" | field task_id)
SUBTASK=$(printf '%s' "$MESSAGE" | grep -o '"subtask":{"id":"[^"]*"' | cut -d '"' -f 6)
TEXT=$(printf '%s' "$MESSAGE" | field text)
OUTPUT=$(printf '%s' "$TEXT" | tr '[:lower:]' '[:upper:]')

# 4. The result, on the device's own output topic, correlated with the dispatch.
mosquitto_pub $MQTT -t "$PREFIX/devices/$DEVICE/out" -m "{\"v\":1,\"kind\":\"result\",\
\"id\":\"result-$(now)\",\"correlation_id\":\"$DISPATCH\",\"sender\":\"$DEVICE\",\
\"sent_at\":$(now),\"payload\":{\"task_id\":\"$TASK\",\"subtask_id\":\"$SUBTASK\",\
\"status\":\"done\",\"output\":\"$OUTPUT\"}}"

# 5. Leaving: presence offline (a long-lived client sets this as its MQTT last will instead).
mosquitto_pub $MQTT -r -t "$PREFIX/devices/$DEVICE/presence" -m "{\"v\":1,\"kind\":\"presence\",\
\"id\":\"bye-$(now)\",\"sender\":\"$DEVICE\",\"sent_at\":$(now),\"payload\":{\"state\":\"offline\"}}"
