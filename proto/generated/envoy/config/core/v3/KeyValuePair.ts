// Original file: envoy/config/core/v3/base.proto

import type { Value as _google_protobuf_Value, Value__Output as _google_protobuf_Value__Output } from '../../../../google/protobuf/Value.ts';

export interface KeyValuePair {
  'key'?: (string);
  'value'?: (_google_protobuf_Value | null);
}

export interface KeyValuePair__Output {
  'key': (string);
  'value': (_google_protobuf_Value__Output | null);
}
