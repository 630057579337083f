// Test certificates made with openssl at test time, in a temporary directory (never committed).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Issues a client certificate with this CN (signed by the CA, or self-signed when untrusted). */
  client(cn: string, trusted?: boolean): { cert: string; key: string };
  /** Re-issues the server certificate (same files) with another CN: a renewal. */
  renewServer(cn: string): void;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function makePki(dir: string): TestPki {
  openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=Starling Test CA'], dir);
  writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  writeFileSync(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  const issueServer = (cn: string): void => {
    openssl(['req', ...EC, '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${cn}`], dir);
    openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext'], dir);
  };
  issueServer('starling-test-server');
  return {
    dir,
    caCert: path.join(dir, 'ca.crt'),
    serverCert: path.join(dir, 'server.crt'),
    serverKey: path.join(dir, 'server.key'),
    client(cn, trusted = true) {
      const base = `client-${cn}${trusted ? '' : '-untrusted'}`;
      if (trusted) {
        openssl(['req', ...EC, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${cn}`], dir);
        openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${base}.crt`, '-days', '2', '-extfile', 'client.ext'], dir);
      } else {
        openssl(['req', '-x509', ...EC, '-keyout', `${base}.key`, '-out', `${base}.crt`, '-days', '2', '-subj', `/CN=${cn}`], dir);
      }
      return { cert: path.join(dir, `${base}.crt`), key: path.join(dir, `${base}.key`) };
    },
    renewServer(cn) {
      issueServer(cn);
    },
  };
}
