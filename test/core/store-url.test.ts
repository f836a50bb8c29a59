import { describe, expect, it } from 'vitest';
import { parseStore } from '../../src/core/store-url.js';

describe('parseStore', () => {
  it.each([
    ['file', { kind: 'file' }],
    ['etcd://127.0.0.1:2379', { kind: 'etcd', endpoints: ['http://127.0.0.1:2379'], prefix: '/uncloud-vm', tls: false, ttlS: 30 }],
    ['etcd://a:1,b.example:2379/cluster/one', { kind: 'etcd', endpoints: ['http://a:1', 'http://b.example:2379'], prefix: '/cluster/one', tls: false, ttlS: 30 }],
    ['etcds://[::1]:2379/x?ttl=5', { kind: 'etcd', endpoints: ['https://[::1]:2379'], prefix: '/x', tls: true, ttlS: 5 }],
    ['etcd://h:2379/', { kind: 'etcd', endpoints: ['http://h:2379'], prefix: '/uncloud-vm', tls: false, ttlS: 30 }],
  ])('%s', (text, want) => {
    expect(parseStore(text)).toEqual(want);
  });

  it.each([
    ['sqlite', /unknown form/],
    ['etcd://', /unknown form/],
    ['etcd://host', /bad endpoint 'host'/],
    ['etcd://host:99999', /bad endpoint/],
    ['etcd://h:1/a b', /bad key prefix/],
    ['etcd://h:1/x?ttl=1', /bad option 'ttl=1'/],
    ['etcd://h:1/x?foo=2', /bad option 'foo=2'/],
    ['http://h:1', /unknown form/],
  ])('refuses %j', (text, re) => {
    expect(() => parseStore(text)).toThrow(re);
  });
});
