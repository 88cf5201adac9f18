package bridge

import (
	"context"

	"github.com/mqttbridge/mqttbridge/bridge/topic"
)

// Alarms on feeds (FeedConfig.Alarms): every transition of an alarm whose
// topic a filter of the feed matches is queued as it happens; while a
// subscription holds (a snapshot or replay is under way), transitions
// wait, the open alarms of the new filters are queued first, and a
// transition is queued only when it is newer (Alarm.Rev) than what the
// feed has queued of that alarm.

// deliverAlarm is called by the hub for each transition matching the feed.
func (f *Feed) deliverAlarm(ev *AlarmEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return
	}
	live, held := false, false
	for _, s := range f.list {
		if topic.Match(s.filter, ev.Topic) {
			live = live || !s.hold
			held = held || s.hold
		}
	}
	switch {
	case live:
		f.queueAlarmLocked(ev, false)
	case held:
		// They count as queued, like held messages (deliverLocked).
		n := int64(len(ev.Message.Payload) + DeliveryOverhead)
		if f.bytes.Load()+f.heldBytes+n > int64(f.cfg.QueueBytes) {
			f.dropLocked()
			return
		}
		f.heldAlarms = append(f.heldAlarms, ev)
		f.heldBytes += n
	}
}

// queueAlarmLocked queues ev unless the feed has queued a newer revision
// of the alarm during a hold.
func (f *Feed) queueAlarmLocked(ev *AlarmEvent, snapshot bool) {
	if f.alarmRevs != nil {
		if f.alarmRevs[ev.ID] >= ev.Rev {
			return
		}
		f.alarmRevs[ev.ID] = ev.Rev
	}
	f.enqueueLocked(Delivery{Alarm: ev, Snapshot: snapshot}, mono())
}

// alarmSnapshot queues the open alarms whose topic one of the added
// filters matches, newest first, and starts a hold of the alarm
// transitions; release ends it.
func (f *Feed) alarmSnapshot(ctx context.Context, added []string) error {
	if !f.cfg.Alarms || len(f.b.al.cfgs) == 0 {
		return nil
	}
	f.mu.Lock()
	f.alarmRevs = map[string]int{}
	f.mu.Unlock()
	return f.b.eachOpenAlarm(ctx, func(a *Alarm) error {
		match := false
		for _, flt := range added {
			match = match || topic.Match(flt, a.Topic)
		}
		if !match {
			return nil
		}
		return f.queueWait(ctx, func() { f.queueAlarmLocked(NewAlarmEvent(*a), true) })
	})
}

// releaseAlarmsLocked queues the transitions that waited and ends the
// hold.
func (f *Feed) releaseAlarmsLocked() {
	held := f.heldAlarms
	f.heldAlarms = nil
	for _, ev := range held {
		f.queueAlarmLocked(ev, false)
	}
	f.alarmRevs = nil
}
