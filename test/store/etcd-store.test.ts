/** The etcd store passes the same contract as the file store, against a real etcd on loopback. */
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll } from 'vitest';
import { parseStore, type EtcdTarget } from '../../src/core/store-url.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';
import { storeContract } from './contract.js';

let etcd: EtcdServer;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => etcd?.remove());

let n = 0;
storeContract('etcd store', () => {
  n += 1;
  const prefix = `contract-${process.pid}-${n}`;
  let store: EtcdStore | undefined;
  return {
    make: async ({ isAlive, host }) => {
      store = new EtcdStore({ target: parseStore(etcd.url(prefix)) as EtcdTarget, isAlive, ...(host ? { host } : {}) });
      return store;
    },
    corrupt: async (mac, text) => {
      const c = new Etcd3({ hosts: etcd.endpoint });
      await c.put(`/${prefix}/macs/${mac.replaceAll(':', '')}`).value(text).exec();
      c.close();
    },
    corruptIdentity: async (name, text) => {
      const c = new Etcd3({ hosts: etcd.endpoint });
      await c.put(`/${prefix}/vms/${name}`).value(text).exec();
      c.close();
    },
    cleanup: async () => {
      const c = new Etcd3({ hosts: etcd.endpoint });
      await c.delete().prefix(`/${prefix}/`).exec();
      c.close();
    },
  };
});
