// Type-aware linting: every TypeScript file is checked against the project (tsconfig) that owns it.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: ["node_modules/", "dist/", "**/.weft/", "**/.wrangler/", "test/fixtures/projects/", // a user's project, not ours
      "**/worker-configuration.d.ts", "bench/results.json"],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        project: [
          "./workers/*/tsconfig.json",
          "./examples/shop/workers/*/tsconfig.json",
          "./examples/shop/vendor/tsconfig.json",
          "./test/tsconfig.json",
          "./test/fixtures/*/tsconfig.json",
          "./bench/workers/*/tsconfig.json",
          "./scripts/tsconfig.json",
          "./cli/tsconfig.json",
        ],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/consistent-type-assertions": ["error", { assertionStyle: "as", objectLiteralTypeAssertions: "never" }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/require-await": "off",
      eqeqeq: ["error", "always"],
      "no-console": "off",
    },
  },
  {
    files: ["**/*.js"],
    ...tseslint.configs.disableTypeChecked,
  },
);
