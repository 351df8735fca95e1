// oidc-provider ships no type declarations: the few members the sign-in test fixture uses.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface ClientLike {
    readonly clientId: string;
    grantTypeAllowed(grant: string): boolean;
  }
  export interface GrantLike {
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    save(): Promise<string>;
  }
  export interface KoaContextWithOIDC {
    readonly oidc: {
      readonly client?: ClientLike;
      readonly session?: { readonly accountId?: string; grantIdFor(clientId: string): string | undefined };
      readonly result?: { readonly consent?: { readonly grantId?: string } };
      readonly provider: {
        readonly Grant: {
          new (init: { clientId: string; accountId: string }): GrantLike;
          find(id: string): Promise<GrantLike | undefined>;
        };
      };
    };
  }
  export type Configuration = Record<string, unknown> & {
    issueRefreshToken?: (ctx: unknown, client: ClientLike, code: unknown) => Promise<boolean>;
    findAccount?: (
      ctx: unknown,
      id: string,
    ) => { accountId: string; claims: () => Record<string, unknown> } | undefined;
    loadExistingGrant?: (ctx: KoaContextWithOIDC) => Promise<GrantLike | undefined>;
  };
  export class Provider {
    constructor(issuer: string, config: Configuration);
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
  }
}
