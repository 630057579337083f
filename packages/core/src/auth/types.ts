// Requests a session worker sends the main thread's security service (alongside the hub's requests).

/** CONNECT credentials to check. `address` is the client's (after PROXY protocol, when used). */
export interface AuthenticateRequest {
  op: 'authenticate';
  clientId: string;
  username: string | null;
  password: Uint8Array | null;
  address: string;
  /** Identity from the transport (TLS client certificate CN with tls.useCnAsUsername). */
  certificateUsername?: string | null;
}

export type AuthResult = 'ok' | 'bad_credentials' | 'not_authorized' | 'busy' | 'unavailable';

export interface AuthenticateAnswer {
  result: AuthResult;
  /** The identity the connection carries from now on (ACLs, hook authorize); null: anonymous. */
  username: string | null;
  /** Refused without checking: too many recent failures from this address. */
  rateLimited?: boolean;
  /** The hook module exports authorize(): PUBLISH/SUBSCRIBE decisions go through it. */
  hookAuthorizes?: boolean;
}

/** Asks the hook module's authorize(); answered true/false, or null when the hook has no opinion. */
export interface AuthorizeRequest {
  op: 'authorize';
  clientId: string;
  username: string | null;
  action: 'publish' | 'subscribe';
  topic: string;
}

export type SecurityRequest = AuthenticateRequest | AuthorizeRequest;
