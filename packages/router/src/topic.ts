// Topic names and filters: validation and matching, MQTT 3.1.1 §4.7 / MQTT 5.0 §4.7.

const MAX_TOPIC_BYTES = 65535;

/** A topic name a PUBLISH may carry: no wildcards, not empty [MQTT-4.7.3-1], [MQTT-3.3.2-2]. */
export function isValidTopicName(topic: string): boolean {
  if (topic.length === 0 || Buffer.byteLength(topic) > MAX_TOPIC_BYTES) return false;
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x2b /* + */ || c === 0x23 /* # */ || c === 0) return false;
  }
  return true;
}

/**
 * A topic filter a SUBSCRIBE may carry: '#' only as the last level on its own [MQTT-4.7.1-2],
 * '+' only as a whole level [MQTT-4.7.1-3], not empty [MQTT-4.7.3-1].
 */
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0 || Buffer.byteLength(filter) > MAX_TOPIC_BYTES) return false;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('\u0000')) return false;
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return false;
    if (level.includes('+') && level !== '+') return false;
  }
  return true;
}

export interface SharedFilter {
  group: string;
  filter: string;
}

/** Splits `$share/{group}/{filter}` (MQTT 5.0 §4.8.2); null when the filter is not shared. */
export function parseSharedFilter(filter: string): SharedFilter | null | 'invalid' {
  if (!filter.startsWith('$share/')) return null;
  const rest = filter.slice(7);
  const slash = rest.indexOf('/');
  if (slash <= 0) return 'invalid';
  const group = rest.slice(0, slash);
  const inner = rest.slice(slash + 1);
  // [MQTT-4.8.2-1] the ShareName must not contain '/', '+' or '#'; [MQTT-4.8.2-2] it must be followed by a filter.
  if (group.includes('+') || group.includes('#') || !isValidTopicFilter(inner)) return 'invalid';
  return { group, filter: inner };
}

/** Whether topic matches filter; '$' topics are not matched by a leading wildcard [MQTT-4.7.2-1]. */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.charCodeAt(0) === 0x24 /* $ */ && (filter[0] === '+' || filter[0] === '#')) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}
