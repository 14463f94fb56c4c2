using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Queue.Adapters.Azure;

/// <summary>
/// Creates an account shared access signature for the Blob and Queue services, so a process can be
/// given time-limited access without the account key (set it as <c>Queue:Azure:SasToken</c>).
/// </summary>
public static class AccountSas
{
    /// <param name="permissions">Account SAS permissions, e.g. <c>rwdlacup</c> (read, write, delete, list, add, create, update, process).</param>
    public static string Create(string accountName, byte[] accountKey, DateTimeOffset expiry, string permissions = "rwdlacup")
    {
        const string services = "bq";
        const string resourceTypes = "sco";
        const string protocols = "https,http";
        var expires = expiry.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
        // Field order of the account SAS string-to-sign (versions 2020-12-06 and later end with the encryption scope).
        var toSign = string.Join('\n', accountName, permissions, services, resourceTypes, "", expires, "", protocols, AzureStorageClient.ApiVersion, "") + "\n";
        var signature = Convert.ToBase64String(HMACSHA256.HashData(accountKey, Encoding.UTF8.GetBytes(toSign)));
        return $"sv={AzureStorageClient.ApiVersion}&ss={services}&srt={resourceTypes}&sp={permissions}&se={Uri.EscapeDataString(expires)}&spr={Uri.EscapeDataString(protocols)}&sig={Uri.EscapeDataString(signature)}";
    }
}
